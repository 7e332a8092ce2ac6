package retry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/portvol/portvol/transfer"
)

// Get implements transfer.ObjectStore. The body resumes after transient
// read errors; see the package doc.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.open(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	return &resumingReader{s: s, ctx: ctx, key: key, off: off, length: length, rc: rc}, nil
}

func (s *Store) open(ctx context.Context, key string, off, length int64) (rc io.ReadCloser, err error) {
	err = s.do(ctx, "get", key, func() error {
		rc, err = s.ObjectStore.Get(ctx, key, off, length)
		return err
	})
	return rc, err
}

type resumingReader struct {
	s           *Store
	ctx         context.Context
	key         string
	off, length int64 // the range asked for
	read        int64 // bytes delivered so far
	rc          io.ReadCloser
	err         error // sticky
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		n, err := r.rc.Read(p)
		r.read += int64(n)
		if err == nil || err == io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil // report the error on the next call, after a resume attempt
		}
		if !transfer.Retryable(err) || r.ctx.Err() != nil || errors.Is(err, io.ErrClosedPipe) {
			r.err = err
			return 0, err
		}
		if rerr := r.resume(err); rerr != nil {
			r.err = rerr
			return 0, rerr
		}
	}
}

// resume reopens the object at the first byte not yet delivered.
func (r *resumingReader) resume(cause error) error {
	_ = r.rc.Close()
	length := r.length
	if length >= 0 {
		length -= r.read
		if length == 0 {
			r.rc = io.NopCloser(eofReader{})
			return nil
		}
	}
	rc, err := r.s.open(r.ctx, r.key, r.off+r.read, length)
	if err != nil {
		return fmt.Errorf("get %q: resuming at byte %d after %w: %w", r.key, r.off+r.read, cause, err)
	}
	r.rc = rc
	return nil
}

func (r *resumingReader) Close() error { return r.rc.Close() }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
