package leasetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// SimConfig tunes Simulate. Zero values mean the defaults.
type SimConfig struct {
	Hosts  int           // simulated hosts (default 4)
	Rounds int           // holds attempted per host (default 80)
	TTL    time.Duration // fake-clock lease TTL (default 1s)
	// The fake clock advances Step every real Every. By default Step is
	// TTL/25 and Every is 1ms, or 3 times the store's measured latency
	// (one read plus one conditional write) if that is longer, so that a
	// TTL spans at least ~150 store calls on any store.
	Step, Every time.Duration
	// FailRate and LoseRate make that share of loads and conditional
	// writes fail before, or lose their response after, taking effect.
	FailRate, LoseRate float64
	Seed               uint64 // 0: random, logged
}

func (c *SimConfig) defaults() {
	if c.Hosts == 0 {
		c.Hosts = 4
	}
	if c.Rounds == 0 {
		c.Rounds = 80
	}
	if c.TTL == 0 {
		c.TTL = time.Second
	}
	if c.Step == 0 {
		c.Step = c.TTL / 25
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
}

// sim is the shared state of one simulation.
type sim struct {
	t      testing.TB
	cfg    SimConfig
	clock  *Clock
	audit  *audit
	volume string

	mu        sync.Mutex
	holders   map[uint64]string // generation → host it was handed to
	published map[string]bool   // snapshots whose Publish succeeded
	fenced    map[string]bool   // snapshots whose Publish failed with ErrFenced
	stats     map[string]int
}

// Simulate runs several hosts, each a goroutine with its own Manager over
// store (through an auditing and a fault-injecting layer), that acquire,
// renew, publish, release, pause, crash and come back, take over, and let
// crashed incarnations publish with their stale leases. Afterwards it
// checks, over the history of writes the store applied:
//
//  1. no two hosts ever held the same generation;
//  2. the generation never decreased;
//  3. every published head came from the holder of that generation, and
//     no publish that failed as fenced ever became visible (while every
//     publish reported successful did);
//  4. no lease was taken over (without force) before the taker had seen it
//     unchanged for a full TTL.
func Simulate(t *testing.T, store transfer.ObjectStore, cfg SimConfig) {
	cfg.defaults()
	if cfg.Every == 0 {
		cfg.Every = max(time.Millisecond, 3*latency(t, store))
	}
	t.Logf("simulation: %d hosts × %d rounds, TTL %s, clock +%s every %s, fail %.2f lose %.2f, seed %d",
		cfg.Hosts, cfg.Rounds, cfg.TTL, cfg.Step, cfg.Every, cfg.FailRate, cfg.LoseRate, cfg.Seed)
	clock := NewClock()
	s := &sim{
		t: t, cfg: cfg, clock: clock, audit: &audit{inner: store, clock: clock}, volume: "simvol",
		holders: map[uint64]string{}, published: map[string]bool{}, fenced: map[string]bool{}, stats: map[string]int{},
	}
	// A liveness bound, not a speed check: generous, as make test runs
	// the unit suite beside the integration suite on two cores.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tick, stopTick := context.WithCancel(ctx)
	go clock.Run(tick, cfg.Step, cfg.Every)

	var wg sync.WaitGroup
	for i := range cfg.Hosts {
		h := s.newHost(fmt.Sprintf("host%d", i), cfg.Seed+uint64(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.run(ctx)
		}()
	}
	began := time.Now()
	wg.Wait()
	stopTick()
	t.Logf("simulation: %s of fake time in %s", clock.Now().Round(time.Second), time.Since(began).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("simulation did not finish in time: %v", ctx.Err())
	}
	s.check()
}

func (s *sim) note(stat string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[stat]++
}

// handed records that a call returned a lease on gen to host.
func (s *sim) handed(gen uint64, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.holders[gen]; ok && prev != host {
		s.t.Errorf("generation %d handed to %s and to %s", gen, prev, host)
	}
	s.holders[gen] = host
}

func (s *sim) publishResult(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.published[id] = true
		s.stats["publish ok"]++
	case errors.Is(err, lease.ErrFenced):
		s.fenced[id] = true
		s.stats["publish fenced"]++
	default:
		s.stats["publish failed"]++
	}
}

// latency measures a conditional write plus a read on store.
func latency(t *testing.T, store transfer.ObjectStore) time.Duration {
	const key, rounds = "leasetest/calibrate", 10
	ctx := t.Context()
	began := time.Now()
	etag, err := store.PutIfAbsent(ctx, key, []byte("0"))
	for i := 1; err == nil && i < rounds; i++ {
		if _, _, err = store.Load(ctx, key, lease.MaxRecordSize); err == nil {
			etag, err = store.PutIfMatch(ctx, key, []byte(fmt.Sprint(i)), etag)
		}
	}
	if err != nil {
		t.Fatalf("calibrating on %s: %v", key, err)
	}
	d := time.Since(began) / rounds
	if err := store.Delete(ctx, key); err != nil {
		t.Fatalf("calibrating: %v", err)
	}
	return d
}
