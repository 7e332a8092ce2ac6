package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/retry"
)

// gauge records how many Puts run at once.
type gauge struct {
	transfer.ObjectStore
	cur, peak atomic.Int32
	fail      string
}

func (g *gauge) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	n := g.cur.Add(1)
	defer g.cur.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	if key == g.fail {
		return fmt.Errorf("put %q: %w", key, transfer.ErrPermanent)
	}
	return g.ObjectStore.Put(ctx, key, r, size)
}

func TestGroupConcurrencyAndProgress(t *testing.T) {
	st := &gauge{ObjectStore: memstore.New()}
	var mu sync.Mutex
	var reports []transfer.Progress
	g := transfer.NewGroup(context.Background(), st, transfer.GroupOptions{
		Concurrency:      3,
		ProgressInterval: time.Nanosecond,
		Progress: func(p transfer.Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		},
	})
	const n, size = 20, 100 << 10
	for i := range n {
		if err := g.PutBytes(fmt.Sprintf("k%02d", i), bytes.Repeat([]byte{byte(i)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if p := st.peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want exactly the limit 3", p)
	}
	last := reports[len(reports)-1]
	if last.Done != n*size || last.Total != n*size {
		t.Errorf("final progress %+v, want %d of %d", last, n*size, n*size)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Done < reports[i-1].Done {
			t.Fatalf("progress went backwards: %+v after %+v", reports[i], reports[i-1])
		}
	}

	// Get: bytes read are counted, and fn sees the right range.
	reports = nil
	g = transfer.NewGroup(context.Background(), st, transfer.GroupOptions{Progress: func(p transfer.Progress) { reports = append(reports, p) }})
	var got []byte
	if err := g.Get("k07", 10, 50, func(r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{7}, 50)) {
		t.Fatalf("Get via group: %d bytes, %v", len(got), err)
	}
	if last := reports[len(reports)-1]; last.Done != 50 || last.Total != 50 {
		t.Errorf("Get progress %+v, want 50 of 50", last)
	}
}

func TestGroupFirstErrorStops(t *testing.T) {
	st := &gauge{ObjectStore: memstore.New(), fail: "k03"}
	g := transfer.NewGroup(context.Background(), st, transfer.GroupOptions{Concurrency: 2})
	var refused error
	for i := range 100 {
		if err := g.PutBytes(fmt.Sprintf("k%02d", i), []byte("x")); err != nil {
			refused = err
			break
		}
	}
	err := g.Wait()
	if !errors.Is(err, transfer.ErrPermanent) {
		t.Fatalf("Wait: %v, want the failing job's error", err)
	}
	if !errors.Is(refused, transfer.ErrPermanent) {
		t.Fatalf("submitting after the failure: %v, want the group's error", refused)
	}
	var listed int
	_ = st.List(context.Background(), "", func(transfer.ObjectInfo) error { listed++; return nil })
	if listed > 10 {
		t.Fatalf("%d objects written after the group failed at the 4th; want the group to stop", listed)
	}
}

// A Put retried after a failure re-reads its source; progress counts each
// byte once.
type failOnce struct {
	transfer.ObjectStore
	failed bool
}

func (f *failOnce) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !f.failed {
		f.failed = true
		_, _ = io.CopyN(io.Discard, r, size/2)
		return errors.New("connection reset")
	}
	return f.ObjectStore.Put(ctx, key, r, size)
}

func TestGroupProgressWithRetries(t *testing.T) {
	st := retry.New(&failOnce{ObjectStore: memstore.New()}, retry.Options{InitialDelay: time.Millisecond})
	var last transfer.Progress
	g := transfer.NewGroup(context.Background(), st, transfer.GroupOptions{Progress: func(p transfer.Progress) { last = p }})
	data := make([]byte, 1<<20)
	if err := g.PutBytes("k", data); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if last.Done != 1<<20 || last.Total != 1<<20 {
		t.Fatalf("progress after a retried Put %+v, want %d of %d", last, 1<<20, 1<<20)
	}
}

func TestGroupBandwidthCap(t *testing.T) {
	lim := transfer.NewLimiter(4 << 20) // 4 MiB/s shared
	g := transfer.NewGroup(context.Background(), memstore.New(), transfer.GroupOptions{Concurrency: 4, Limiter: lim})
	start := time.Now()
	for i := range 4 {
		if err := g.PutBytes(fmt.Sprintf("k%d", i), make([]byte, 512<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// 2 MiB at 4 MiB/s with a 0.4 MiB burst cannot finish in under ~0.4s.
	if took := time.Since(start); took < 350*time.Millisecond {
		t.Fatalf("2 MiB under a 4 MiB/s cap took %s: the cap did not hold", took)
	}
}

func TestGroupCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := transfer.NewGroup(ctx, memstore.New(), transfer.GroupOptions{})
	cancel()
	if err := g.PutBytes("k", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutBytes on a cancelled group: %v", err)
	}
	if err := g.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled group: %v", err)
	}
}
