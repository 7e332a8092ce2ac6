package writer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

const testTTL = 300 * time.Millisecond

func manager(t *testing.T, st transfer.ObjectStore, host string) *lease.Manager {
	t.Helper()
	m, err := lease.New(st, lease.Options{Host: host, TTL: testTTL, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func claim(t *testing.T, dir, host string) *Claim {
	t.Helper()
	c, err := OpenClaim(dir, "store1", host, "vol")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A claim is exclusive while its holder lives: a second open is refused,
// naming the holder's pid; once closed (the process died) it is free and
// the next holder reads what the last one recorded.
func TestClaimExclusive(t *testing.T) {
	dir := t.TempDir()
	c := claim(t, dir, "h-cli")
	if err := c.record(claimHeld, 7); err != nil {
		t.Fatal(err)
	}
	_, err := OpenClaim(dir, "store1", "h-cli", "vol")
	var busy *BusyError
	if !errors.As(err, &busy) || !errors.Is(err, ErrBusy) || busy.Holder.PID != os.Getpid() {
		t.Fatalf("second claim: %v, want a BusyError naming pid %d", err, os.Getpid())
	}
	if other, err := OpenClaim(dir, "store1", "h-cli", "other"); err != nil {
		t.Fatalf("another volume's claim: %v", err)
	} else {
		_ = other.Close()
	}
	_ = c.Close()
	c2 := claim(t, dir, "h-cli")
	if p := c2.Prior(); p.State != claimHeld || p.Generation != 7 {
		t.Errorf("prior = %+v, want held at 7", p)
	}
	if _, err := OpenClaim(dir, "store1", "../x", "vol"); err == nil {
		t.Error("a host id that is not a path segment was accepted")
	}
}

// A run that dies holding the lease (kill -9: no release, the claim's lock
// dropped by the kernel) is continued at once by the next run with the
// same claim, at the same generation; the dead run's lease is fenced.
func TestResumeDeadRun(t *testing.T) {
	ctx := context.Background()
	st, dir := memstore.New(), t.TempDir()
	c1 := claim(t, dir, "h-cli")
	dead, how, err := Acquire(ctx, Options{Leases: manager(t, st, "h-cli"), Volume: "vol", Claim: c1})
	if err != nil || how != Acquired {
		t.Fatalf("first acquire: %v %v", how, err)
	}
	_ = c1.Close() // the process dies

	c2 := claim(t, dir, "h-cli")
	l, how, err := Acquire(ctx, Options{Leases: manager(t, st, "h-cli"), Volume: "vol", Claim: c2})
	if err != nil || how != Resumed || l.Generation() != dead.Generation() {
		t.Fatalf("re-run: %v generation %v, %v; want resumed at %d", how, l, err, dead.Generation())
	}
	if err := dead.Renew(ctx); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("the dead run's lease still renews: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// Without proof (no claim, or a run killed between "acquiring" and the
// lease), a lease of this host id is taken over only once unchanged for a
// full TTL; one that is renewed is refused.
func TestUnprovenOwnLease(t *testing.T) {
	ctx := context.Background()
	st, dir := memstore.New(), t.TempDir()
	c1 := claim(t, dir, "h-cli")
	dead, _, err := Acquire(ctx, Options{Leases: manager(t, st, "h-cli"), Volume: "vol", Claim: c1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.record(claimAcquiring, 0); err != nil { // as if killed before recording the lease
		t.Fatal(err)
	}
	_ = c1.Close()

	c2 := claim(t, dir, "h-cli")
	m2 := manager(t, st, "h-cli")
	start := time.Now()
	l, how, err := Acquire(ctx, Options{Leases: m2, Volume: "vol", Claim: c2})
	if err != nil || how != TookOver || l.Generation() != dead.Generation()+1 {
		t.Fatalf("re-run: %v %v; want taken over at generation %d", how, err, dead.Generation()+1)
	}
	if waited := time.Since(start); waited < testTTL {
		t.Errorf("took an unproven lease after %s, before a TTL (%s) of watching", waited, testTTL)
	}
	_ = c2.Close()

	// A live holder of the same id, renewing: refused.
	kctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = l.KeepAlive(kctx, nil) }()
	defer func() { stop(); wg.Wait() }()
	_, _, err = Acquire(ctx, Options{Leases: manager(t, st, "h-cli"), Volume: "vol"})
	var held *lease.HeldError
	if !errors.As(err, &held) || !held.Self {
		t.Fatalf("a renewed lease of this host id: %v, want refused", err)
	}
}

// flaky applies head record writes but loses their answers, and then
// fails reads, while armed: the outcome of the publish is unknown to the
// lease's own retries.
type flaky struct {
	transfer.ObjectStore
	mu           sync.Mutex
	loseWrites   int
	failLoads    int
	droppedWrite bool // drop (not apply) the lost writes
	// failAfterLoss: once a write's answer is lost, fail this many reads
	failAfterLoss int
}

var errLost = errors.New("connection reset (injected)")

func (f *flaky) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	f.mu.Lock()
	lose := f.loseWrites > 0 && filepath.Base(key) == "head.json"
	if lose {
		f.loseWrites--
		f.failLoads += f.failAfterLoss
	}
	drop := f.droppedWrite
	f.mu.Unlock()
	if lose && drop {
		return "", errLost
	}
	tag, err := f.ObjectStore.PutIfMatch(ctx, key, data, etag)
	if lose {
		return "", errLost
	}
	return tag, err
}

func (f *flaky) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	f.mu.Lock()
	fail := f.failLoads > 0 && filepath.Base(key) == "head.json"
	if fail {
		f.failLoads--
	}
	f.mu.Unlock()
	if fail {
		return nil, "", errLost
	}
	return f.ObjectStore.Load(ctx, key, limit)
}

// A publish whose answer is lost (and the read-back fails too) is settled
// before Snapshot returns: published if it applied, not if it did not.
func TestSnapshotSettlesLostPublish(t *testing.T) {
	for _, applied := range []bool{true, false} {
		ctx := context.Background()
		f := &flaky{ObjectStore: memstore.New()}
		if err := snapshot.Init(ctx, f, snapshot.InitOptions{}); err != nil {
			t.Fatal(err)
		}
		repo, err := snapshot.Open(ctx, f, snapshot.Options{})
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "a"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := manager(t, f, "h").Acquire(ctx, "vol")
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.loseWrites, f.failLoads, f.droppedWrite = 1, 4, !applied
		f.mu.Unlock()
		res, err := Snapshot(ctx, repo, l, src, SnapshotOptions{Host: "h"})
		o, ierr := manager(t, f, "observer").Inspect(ctx, "vol")
		if ierr != nil {
			t.Fatal(ierr)
		}
		switch {
		case applied && (err != nil || !res.Published || o.Record.Head != res.ID):
			t.Errorf("applied publish: %v, published %v, head %q want %q", err, res.Published, o.Record.Head, res.ID)
		case !applied && (err == nil || res.Published || o.Record.Head != ""):
			t.Errorf("dropped publish: %v, published %v, head %q want none", err, res.Published, o.Record.Head)
		case !applied && errors.Is(err, ErrUnsettled):
			t.Errorf("dropped publish left unsettled: %v", err)
		}
	}
}

// An acquisition whose answer is lost (and whose read-back fails too) is
// settled before Acquire gives up: the write applied, so the lease is
// this run's, at the generation it wrote, and nothing is left held that
// nobody knows about.
func TestAcquireSettlesLostAnswer(t *testing.T) {
	ctx := context.Background()
	f := &flaky{ObjectStore: memstore.New()}
	m := manager(t, f, "h")
	l, err := m.Acquire(ctx, "vol") // the record exists: the next acquisition replaces it
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.loseWrites, f.failLoads = 1, 4
	f.mu.Unlock()
	l, how, err := Acquire(ctx, Options{Leases: m, Volume: "vol"})
	if err != nil || how != Acquired || l.Generation() != 2 {
		t.Fatalf("acquire with a lost answer: %v %v", how, err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Errorf("the settled lease does not renew: %v", err)
	}
}

// A run killed after sending its acquisition but before hearing back
// (here: the answer lost and the store unreadable until it gives up) left
// "acquiring" with the exact record it sent; the store holds that record,
// so the next run continues the lease at once instead of waiting a TTL.
func TestResumeUnansweredAcquisition(t *testing.T) {
	ctx := context.Background()
	f := &flaky{ObjectStore: memstore.New()}
	dir := t.TempDir()
	if err := f.ObjectStore.Put(ctx, "x", nil, 0); err != nil { // the store is not empty
		t.Fatal(err)
	}
	first, err := manager(t, f, "h-cli").Acquire(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}

	c1 := claim(t, dir, "h-cli")
	f.mu.Lock()
	f.loseWrites, f.failAfterLoss = 1, 1000
	f.mu.Unlock()
	if _, _, err := Acquire(ctx, Options{Leases: manager(t, c1.Watch(f), "h-cli"), Volume: "vol", Claim: c1}); err == nil {
		t.Fatal("acquired through an unreadable store")
	}
	_ = c1.Close() // the process dies
	f.mu.Lock()
	f.failLoads, f.failAfterLoss = 0, 0
	f.mu.Unlock()
	if p := claimRecordOf(t, dir); p.State != claimAcquiring || p.Nonce == "" || p.Generation != 2 {
		t.Fatalf("the dead run's claim: %+v, want acquiring generation 2 with the nonce it sent", p)
	}

	c2 := claim(t, dir, "h-cli")
	l, how, err := Acquire(ctx, Options{Leases: manager(t, c2.Watch(f), "h-cli"), Volume: "vol", Claim: c2})
	if err != nil || how != Resumed || l.Generation() != 2 {
		t.Fatalf("re-run: %v %v, want generation 2 resumed", how, err)
	}
}

func claimRecordOf(t *testing.T, dir string) ClaimRecord {
	t.Helper()
	c, err := OpenClaim(dir, "store1", "h-cli", "vol")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Prior()
}
