package leasetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/portvol/portvol/lease"
)

// simHost is one simulated host. What survives a crash is only what a
// real host keeps on disk: the generation it held (persisted).
type simHost struct {
	s      *sim
	id     string
	rng    *rand.Rand
	faults *FaultStore
	mgr    *lease.Manager

	persisted uint64       // the generation "in bbolt"; 0 if none
	zombie    *lease.Lease // a lease held by a crashed incarnation
	n         int          // snapshots made
}

func (s *sim) newHost(id string, seed uint64) *simHost {
	faults := NewFaultStore(s.audit.as(id), seed)
	faults.SetRates(s.cfg.FailRate, s.cfg.LoseRate)
	h := &simHost{s: s, id: id, rng: rand.New(rand.NewPCG(seed, 1)), faults: faults}
	h.restart()
	return h
}

// restart gives the host a fresh process: a Manager that remembers nothing.
func (h *simHost) restart() {
	m, err := lease.New(h.faults, lease.Options{Host: h.id, TTL: h.s.cfg.TTL, PollInterval: h.s.cfg.TTL / 20, Clock: h.s.clock})
	if err != nil {
		h.s.t.Fatalf("lease.New: %v", err)
	}
	h.mgr = m
}

// upTo returns a random duration in [0, d).
func (h *simHost) upTo(d time.Duration) time.Duration { return time.Duration(h.rng.Int64N(int64(d))) }

func (h *simHost) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-h.s.clock.After(d):
	}
}

func (h *simHost) run(ctx context.Context) {
	ttl := h.s.cfg.TTL
	for range h.s.cfg.Rounds {
		if ctx.Err() != nil {
			return
		}
		if l := h.obtain(ctx); l != nil {
			h.hold(ctx, l)
		} else {
			h.sleep(ctx, h.upTo(ttl/2))
		}
	}
}

// obtain tries to get the volume one way or another.
func (h *simHost) obtain(ctx context.Context) *lease.Lease {
	ttl, vol := h.s.cfg.TTL, h.s.volume
	var l *lease.Lease
	var err error
	switch r := h.rng.Float64(); {
	case h.persisted != 0 && r < 0.5:
		h.s.note("resume")
		l, err = h.mgr.Resume(ctx, vol, h.persisted)
		if errors.Is(err, lease.ErrFenced) || errors.Is(err, lease.ErrReleased) {
			h.persisted = 0
		}
	case h.zombie != nil && r < 0.7:
		h.publish(ctx, h.zombie)
		h.zombie = nil
		return nil
	case r < 0.8:
		l, err = h.mgr.WaitAcquire(ctx, vol, lease.WaitOptions{Wait: h.upTo(ttl), AutoTakeover: h.rng.IntN(2) == 0})
	default:
		l, err = h.mgr.Takeover(ctx, vol, lease.TakeoverOptions{Wait: h.upTo(3 * ttl / 2), Force: h.rng.Float64() < 0.05})
	}
	if err != nil {
		h.s.note("obtain failed")
		return nil
	}
	h.s.handed(l.Generation(), h.id)
	h.s.note("obtained")
	if l.TookOver() != nil {
		h.s.note("took over")
	}
	h.persisted = l.Generation()
	return l
}

// hold keeps the lease alive while doing random things with it, until it
// is released, lost, or the host crashes.
func (h *simHost) hold(ctx context.Context, l *lease.Lease) {
	ttl := h.s.cfg.TTL
	for {
		kctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- l.KeepAlive(kctx, nil) }()
		ended := func() bool {
			for {
				select {
				case err := <-done:
					stop()
					if err != nil {
						h.s.note("keepalive fenced")
						h.persisted = 0
					}
					return true
				case <-h.s.clock.After(h.upTo(ttl / 2)):
				}
				switch r := h.rng.Float64(); {
				case r < 0.5:
					if h.publish(ctx, l) {
						stop()
						<-done
						return true
					}
				case r < 0.65:
					err := l.Release(ctx)
					if err == nil || errors.Is(err, lease.ErrFenced) {
						h.s.note(fmt.Sprintf("release %v", err == nil))
						h.persisted = 0
						stop()
						<-done
						return true
					}
				case r < 0.8: // crash: the process and all it knew are gone
					stop()
					<-done
					h.s.note("crash")
					h.zombie = l // what a frozen, later thawed, old process would still hold
					h.restart()
					h.sleep(ctx, h.upTo(2*ttl))
					return true
				case r < 0.9: // pause: no renewals for a while, then publish as if nothing happened
					stop()
					<-done
					h.s.note("pause")
					h.sleep(ctx, h.upTo(2*ttl))
					return h.publish(ctx, l)
				}
				if ctx.Err() != nil {
					stop()
					<-done
					return true
				}
			}
		}()
		if ended {
			return
		}
	}
}

// publish publishes a new snapshot with l and reports whether l is lost.
func (h *simHost) publish(ctx context.Context, l *lease.Lease) bool {
	h.n++
	id := fmt.Sprintf("%s-g%d-%d", h.id, l.Generation(), h.n)
	err := l.Publish(ctx, id)
	h.s.publishResult(id, err)
	if errors.Is(err, lease.ErrFenced) {
		if h.persisted == l.Generation() {
			h.persisted = 0
		}
		return true
	}
	return false
}
