package leasetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

func testAcquireAbsent(t *testing.T, e *env) {
	l := e.acquire(e.host("hostA", nil), "db")
	if l.Generation() != 1 || l.Head() != "" || l.TookOver() != nil {
		t.Errorf("lease: generation %d head %q took over %v; want 1, no head, not taken over", l.Generation(), l.Head(), l.TookOver())
	}
	r := e.inspect("db")
	if r.Version != 1 || r.Volume != "db" || r.State != lease.Held || r.Owner != "hostA" || r.Generation != 1 {
		t.Errorf("record %+v, want version 1, db held by hostA at generation 1", r)
	}
}

func testAcquireReleased(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	e.must(la.Release(e.ctx), "release")
	e.must(la.Release(e.ctx), "second release")
	if r := e.inspect("db"); r.State != lease.Released || r.Owner != "hostA" || r.Head != "s1" || r.HeadGeneration != 1 {
		t.Errorf("after release: %+v", r)
	}
	if err := la.Publish(e.ctx, "s2"); !errors.Is(err, lease.ErrReleased) {
		t.Errorf("publish after release: %v, want ErrReleased", err)
	}
	lb := e.acquire(b, "db")
	if lb.Generation() != 2 || lb.Head() != "s1" || lb.TookOver() != nil {
		t.Errorf("hostB: generation %d head %q took over %v; want 2, s1, not taken over", lb.Generation(), lb.Head(), lb.TookOver())
	}
	if r := e.inspect("db"); r.State != lease.Held || r.Owner != "hostB" || r.Generation != 2 || r.Head != "s1" {
		t.Errorf("after hostB acquired: %+v", r)
	}
}

func testHeld(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	e.acquire(a, "db")
	_, err := b.Acquire(e.ctx, "db")
	h := heldError(t, err)
	if h.Owner != "hostA" || h.Generation != 1 || h.Self || h.Unchanged != 0 || errors.Is(err, lease.ErrExpired) {
		t.Errorf("first look: %+v", h)
	}
	e.clock.Advance(12 * time.Second)
	_, err = b.Acquire(e.ctx, "db")
	if h = heldError(t, err); h.Unchanged != 12*time.Second || h.Expired() {
		t.Errorf("after 12s: unchanged %s expired %v", h.Unchanged, h.Expired())
	}
	for _, want := range []string{`"hostA"`, "generation 1", "unchanged for 12s of a 30s lease", "portvol takeover db"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	e.clock.Advance(TTL - 12*time.Second)
	_, err = b.Acquire(e.ctx, "db")
	if !errors.Is(err, lease.ErrExpired) || !errors.Is(err, lease.ErrHeld) {
		t.Errorf("after a full TTL: %v, want ErrExpired", err)
	}
	if r := e.inspect("db"); r.Owner != "hostA" || r.Generation != 1 {
		t.Errorf("a plain Acquire took over an expired lease: %+v", r)
	}
}

func testTakeoverWaits(t *testing.T, e *env) {
	a, b, c := e.host("hostA", nil), e.host("hostB", nil), e.host("hostC", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	start := e.clock.Now()
	_, err := b.Takeover(e.ctx, "db", lease.TakeoverOptions{})
	if h := heldError(t, err); h.Op != "takeover" || h.Expired() || !strings.Contains(err.Error(), "portvol takeover --force db") {
		t.Errorf("takeover of a live lease: %v", err)
	}
	looks := 0
	lb, err := b.Takeover(e.ctx, "db", lease.TakeoverOptions{Wait: 2 * TTL, Progress: func(*lease.HeldError) { looks++ }})
	e.must(err, "takeover with wait")
	if waited := e.clock.Now() - start; waited < TTL {
		t.Errorf("took over after watching %s, TTL %s", waited, TTL)
	}
	if looks == 0 {
		t.Error("Progress was never called while watching")
	}
	tk := lb.TookOver()
	if lb.Generation() != 2 || lb.Head() != "s1" || tk == nil || tk.From != "hostA" || tk.Generation != 1 || tk.Forced || tk.Unchanged() < TTL {
		t.Errorf("lease after takeover: generation %d head %q took over %+v", lb.Generation(), lb.Head(), tk)
	}
	fencedError(t, la.Publish(e.ctx, "s2"))

	lc, err := c.Takeover(e.ctx, "db", lease.TakeoverOptions{Force: true})
	e.must(err, "forced takeover")
	if tk := lc.TookOver(); lc.Generation() != 3 || tk == nil || !tk.Forced || tk.From != "hostB" {
		t.Errorf("forced takeover: generation %d, %+v", lc.Generation(), tk)
	}
	fencedError(t, lb.Renew(e.ctx))
}

func testRenewRestartsExpiry(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	_, err := b.Acquire(e.ctx, "db")
	heldError(t, err)
	e.clock.Advance(TTL - time.Second)
	e.must(la.Renew(e.ctx), "renew")
	e.clock.Advance(2 * time.Second)
	_, err = b.Takeover(e.ctx, "db", lease.TakeoverOptions{})
	if h := heldError(t, err); h.Expired() || h.Unchanged != 0 {
		t.Errorf("a renewed lease looks %s old to hostB (expired %v); hostB read it just now for the first time", h.Unchanged, h.Expired())
	}
	e.clock.Advance(TTL - time.Second)
	if _, err = b.Acquire(e.ctx, "db"); errors.Is(err, lease.ErrExpired) {
		t.Errorf("expired after %s of the renewed version: %v", TTL-time.Second, err)
	}
	e.clock.Advance(time.Second)
	if _, err = b.Acquire(e.ctx, "db"); !errors.Is(err, lease.ErrExpired) {
		t.Errorf("a TTL after the renewed version: %v, want ErrExpired", err)
	}
}

func testWaitAcrossCalls(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	e.acquire(a, "db")
	const wait = 20 * time.Second
	_, err := b.WaitAcquire(e.ctx, "db", lease.WaitOptions{Wait: wait})
	h := heldError(t, err)
	if h.Waited != wait || h.Expired() || !strings.Contains(err.Error(), "still held by host \"hostA\" after waiting 20s") {
		t.Errorf("first wait: waited %s, expired %v: %v", h.Waited, h.Expired(), err)
	}
	_, err = b.WaitAcquire(e.ctx, "db", lease.WaitOptions{Wait: wait})
	if h = heldError(t, err); !h.Expired() || h.Waited < TTL-wait || h.Waited > TTL-wait+time.Second {
		t.Errorf("second wait: expired %v after %s, want expiry after %s: %v", h.Expired(), h.Waited, TTL-wait, err)
	}
	if !strings.Contains(err.Error(), "-o takeover=auto") {
		t.Errorf("expired message does not offer the fixes: %v", err)
	}
	l, err := b.WaitAcquire(e.ctx, "db", lease.WaitOptions{Wait: wait, AutoTakeover: true})
	e.must(err, "auto takeover")
	if tk := l.TookOver(); l.Generation() != 2 || tk == nil || tk.From != "hostA" || tk.Forced {
		t.Errorf("auto takeover: generation %d, %+v", l.Generation(), tk)
	}
}

func testWaitGetsReleased(t *testing.T, e *env) {
	e.clock = NewClock()
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	type result struct {
		l   *lease.Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := b.WaitAcquire(e.ctx, "db", lease.WaitOptions{Wait: 20 * time.Second})
		got <- result{l, err}
	}()
	e.clock.BlockUntil(1) // hostB found it held and waits
	e.must(la.Release(e.ctx), "release")
	e.clock.Advance(time.Second)
	r := <-got
	e.must(r.err, "WaitAcquire")
	if r.l.Generation() != 2 {
		t.Errorf("generation %d, want 2", r.l.Generation())
	}
}

// slowLoads makes the next Load take d on the fake clock before the store
// reads the object, as a slow response would: the record read may have been
// written at any moment of that flight.
type slowLoads struct {
	transfer.ObjectStore
	clock *Clock
	d     *time.Duration
}

func (s slowLoads) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	s.clock.Advance(*s.d)
	*s.d = 0
	return s.ObjectStore.Load(ctx, key, limit)
}

func testSlowReads(t *testing.T, e *env) {
	slow := 5 * time.Second
	a := e.host("hostA", nil)
	b := e.host("hostB", slowLoads{ObjectStore: e.store, clock: e.clock, d: &slow})
	e.acquire(a, "db")
	for _, step := range []struct {
		advance, want time.Duration
	}{{0, 0}, {0, 0}, {3 * time.Second, 3 * time.Second}} {
		e.clock.Advance(step.advance)
		_, err := b.Acquire(e.ctx, "db")
		if h := heldError(t, err); h.Unchanged != step.want {
			t.Errorf("unchanged %s, want %s: a record's age counts from the end of the (5s) read that first returned it", h.Unchanged, step.want)
		}
	}
}

func testLongerTTL(t *testing.T, e *env) {
	a, b := e.hostTTL("hostA", nil, 4*TTL), e.host("hostB", nil)
	e.acquire(a, "db")
	start := e.clock.Now()
	_, err := b.Acquire(e.ctx, "db")
	heldError(t, err)
	e.clock.Advance(TTL + time.Second)
	_, err = b.Takeover(e.ctx, "db", lease.TakeoverOptions{})
	if h := heldError(t, err); h.Expired() || h.TTL != 4*TTL || !strings.Contains(err.Error(), "of a 2m0s lease") {
		t.Errorf("hostB took hostA's 2m lease for expired after its own 30s TTL: %v", err)
	}
	l, err := b.Takeover(e.ctx, "db", lease.TakeoverOptions{Wait: 4 * TTL})
	e.must(err, "takeover after the holder's TTL")
	if watched := e.clock.Now() - start; watched < 4*TTL || l.Generation() != 2 {
		t.Errorf("took over after %s, generation %d; want at least %s", watched, l.Generation(), 4*TTL)
	}
}
