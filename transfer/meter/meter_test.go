package meter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/meter"
	"github.com/portvol/portvol/transfer/transfertest"
)

func TestConformance(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore {
		return meter.New(memstore.New(), meter.Reports{Sent: func(int64) {}, Received: func(int64) {}, Answered: func(bool, error) {}})
	})
}

// down is a memstore that fails every call while its switch is on, as a
// store behind a dead network does.
type down struct {
	*memstore.Store
	mu  sync.Mutex
	off bool
}

var errDial = errors.New("dial tcp 127.0.0.1:9: connect: connection refused")

func (d *down) fail() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return errDial
	}
	return nil
}

func (d *down) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := d.fail(); err != nil {
		return err
	}
	return d.Store.Put(ctx, key, r, size)
}

func (d *down) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	if err := d.fail(); err != nil {
		return transfer.ObjectInfo{}, err
	}
	return d.Store.Stat(ctx, key)
}

type tally struct {
	mu             sync.Mutex
	sent, received int64
	answers        []bool
}

func (t *tally) reports() meter.Reports {
	return meter.Reports{
		Sent:     func(n int64) { t.mu.Lock(); t.sent += n; t.mu.Unlock() },
		Received: func(n int64) { t.mu.Lock(); t.received += n; t.mu.Unlock() },
		Answered: func(ok bool, _ error) { t.mu.Lock(); t.answers = append(t.answers, ok); t.mu.Unlock() },
	}
}

func (t *tally) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("sent %d, received %d, answers %v", t.sent, t.received, t.answers)
}

func TestReports(t *testing.T) {
	ctx := context.Background()
	inner := &down{Store: memstore.New()}
	var tl tally
	s := meter.New(inner, tl.reports())

	data := bytes.Repeat([]byte("x"), 1000)
	if err := s.Put(ctx, "a", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(ctx, "rec", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "a", 100, 300)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, _, err := s.Load(ctx, "rec", 1<<10); err != nil {
		t.Fatal(err)
	}
	// Answers that are not failures: a missing object, a lost race.
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(ctx, "rec", []byte("x")); !errors.Is(err, transfer.ErrPrecondition) {
		t.Fatal(err)
	}
	if got, want := tl.last(), "sent 1005, received 305, answers [true true true true true true]"; got != want {
		t.Errorf("after a healthy round: %s, want %s", got, want)
	}

	// The store goes away: requests are unanswered, a failed upload moved
	// nothing.
	inner.mu.Lock()
	inner.off = true
	inner.mu.Unlock()
	if err := s.Put(ctx, "b", bytes.NewReader(data), int64(len(data))); !errors.Is(err, errDial) {
		t.Fatal(err)
	}
	// An error of the List callback is the caller's, not the store's; a
	// cancelled request says nothing about the store.
	stop := errors.New("enough")
	if err := s.List(ctx, "", func(transfer.ObjectInfo) error { return stop }); !errors.Is(err, stop) {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Get(cctx, "a", 0, -1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
	if got, want := tl.last(), "sent 1005, received 305, answers [true true true true true true false]"; got != want {
		t.Errorf("after the store went away: %s, want %s", got, want)
	}
	if s.Unwrap() != transfer.ObjectStore(inner) {
		t.Error("Unwrap does not return the wrapped store")
	}
}
