package leasetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// TTL is the lease TTL the suite's deterministic tests use.
const TTL = 30 * time.Second

// Run is the lease conformance suite: every transition of the protocol,
// lost responses, and the randomized simulation, against stores made by
// newStore (a fresh, empty store per call). A store opts in with:
//
//	func TestLease(t *testing.T) { leasetest.Run(t, func(t *testing.T) transfer.ObjectStore { return New(...) }) }
func Run(t *testing.T, newStore func(t *testing.T) transfer.ObjectStore) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"AcquireAbsentCreatesGenerationOne", testAcquireAbsent},
		{"ReleasedIsAcquiredAtNextGenerationWithHead", testAcquireReleased},
		{"HeldByAnotherHost", testHeld},
		{"TakeoverWaitsForAFullTTL", testTakeoverWaits},
		{"RenewalRestartsExpiry", testRenewRestartsExpiry},
		{"SlowReadsDoNotAgeRecords", testSlowReads},
		{"HolderWithLongerTTL", testLongerTTL},
		{"ExpiryIsJudgedAcrossCalls", testWaitAcrossCalls},
		{"WaitAcquireGetsAReleasedVolume", testWaitGetsReleased},
		{"FencedHostCannotPublish", testFenced},
		{"ResumeAfterRestart", testResume},
		{"SameHostIDWithoutLease", testSelfHeld},
		{"RemoveAndRevive", testRemove},
		{"Undelete", testUndelete},
		{"CorruptAndNewerRecords", testCorrupt},
		{"LostResponses", testLostResponses},
		{"SettleUnknownRelease", testSettle},
		{"SettleAfterTakeoverAndRevival", testSettleAfterTakeoverAndRevival},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, newStore(t))) })
	}
	t.Run("Simulation", func(t *testing.T) {
		Simulate(t, newStore(t), SimConfig{})
	})
	t.Run("SimulationWithFaults", func(t *testing.T) {
		Simulate(t, newStore(t), SimConfig{FailRate: 0.05, LoseRate: 0.05})
	})
}

// env is one test's world: a store and a skip clock shared by its hosts.
type env struct {
	t     *testing.T
	ctx   context.Context
	store transfer.ObjectStore
	clock *Clock
}

func newEnv(t *testing.T, store transfer.ObjectStore) *env {
	return &env{t: t, ctx: t.Context(), store: store, clock: NewSkipClock()}
}

// host returns a Manager for host id over store (e.store if nil).
func (e *env) host(id string, store transfer.ObjectStore) *lease.Manager {
	e.t.Helper()
	return e.hostTTL(id, store, TTL)
}

func (e *env) hostTTL(id string, store transfer.ObjectStore, ttl time.Duration) *lease.Manager {
	e.t.Helper()
	if store == nil {
		store = e.store
	}
	m, err := lease.New(store, lease.Options{Host: id, TTL: ttl, Clock: e.clock})
	if err != nil {
		e.t.Fatalf("lease.New: %v", err)
	}
	return m
}

func (e *env) acquire(m *lease.Manager, volume string) *lease.Lease {
	e.t.Helper()
	l, err := m.Acquire(e.ctx, volume)
	if err != nil {
		e.t.Fatalf("%s: Acquire(%s): %v", m.Host(), volume, err)
	}
	return l
}

func (e *env) inspect(volume string) lease.Record {
	e.t.Helper()
	m := e.host("inspector", nil)
	o, err := m.Inspect(e.ctx, volume)
	if err != nil || !o.Exists {
		e.t.Fatalf("Inspect(%s): exists %v, %v", volume, o.Exists, err)
	}
	return o.Record
}

func (e *env) must(err error, what string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// heldError asserts err is a *HeldError and returns it.
func heldError(t *testing.T, err error) *lease.HeldError {
	t.Helper()
	var h *lease.HeldError
	if !errors.As(err, &h) || !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("got %v, want a *HeldError", err)
	}
	return h
}

// fencedError asserts err is a *FencedError and returns it.
func fencedError(t *testing.T, err error) *lease.FencedError {
	t.Helper()
	var f *lease.FencedError
	if !errors.As(err, &f) || !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("got %v, want a *FencedError", err)
	}
	return f
}
