package transfer

import (
	"context"
	"io"
)

// ContextReader returns a reader that fails with ctx's error once ctx is
// done, so a Get body from a store that reads locally (memory, a file)
// stops when the caller gives up, as a network body does. Close closes rc.
func ContextReader(ctx context.Context, rc io.ReadCloser) io.ReadCloser {
	return &ctxReader{ctx: ctx, rc: rc}
}

type ctxReader struct {
	ctx context.Context
	rc  io.ReadCloser
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.rc.Read(p)
}

func (r *ctxReader) Close() error { return r.rc.Close() }
