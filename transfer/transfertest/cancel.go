package transfertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
)

// stallingReader yields n bytes, then blocks until ctx is done, as a
// source stuck on a slow disk or a dead pipe would.
type stallingReader struct {
	ctx     context.Context
	left    int
	stalled chan struct{}
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left > 0 {
		n := min(len(p), r.left)
		clear(p[:n])
		r.left -= n
		return n, nil
	}
	select {
	case <-r.stalled:
	default:
		close(r.stalled)
	}
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func testCancelDuringPut(t *testing.T, s transfer.ObjectStore) {
	old := []byte("the old object")
	put(t, s, "cp/existing", old)
	for _, key := range []string{"cp/new", "cp/existing"} {
		ctx, cancel := context.WithCancel(ctxFor(t))
		src := &stallingReader{ctx: ctx, left: 1 << 20, stalled: make(chan struct{})}
		done := make(chan error, 1)
		go func() { done <- s.Put(ctx, key, src, 8<<20) }()
		select {
		case <-src.stalled:
		case err := <-done:
			cancel()
			t.Fatalf("Put(%q) returned %v before reading its source", key, err)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put(%q) cancelled mid-upload: %v, want an error matching context.Canceled", key, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("Put(%q) did not return within a minute of cancellation", key)
		}
	}
	if _, err := s.Stat(ctxFor(t), "cp/new"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("a cancelled Put left an object behind: Stat error %v", err)
	}
	if got := getAll(t, s, "cp/existing", 0, -1); !bytes.Equal(got, old) {
		t.Fatalf("a cancelled Put changed the existing object to %d bytes", len(got))
	}
	if got := listKeys(t, s, ""); len(got) != 1 {
		t.Fatalf("after cancelled Puts the store lists %+v, want only cp/existing", got)
	}
}

func testCancelDuringGet(t *testing.T, s transfer.ObjectStore) {
	put(t, s, "cg/x", randomData(9, 32<<20))
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	rc, err := s.Get(ctx, "cg/x", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Fatalf("reading a Get body after cancellation returned %d more bytes and no error", n)
	}
}
