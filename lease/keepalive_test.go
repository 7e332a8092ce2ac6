package lease_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/lease/leasetest"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

const ttl = 30 * time.Second

func manager(t *testing.T, store transfer.ObjectStore, host string, clock lease.Clock) *lease.Manager {
	t.Helper()
	m, err := lease.New(store, lease.Options{Host: host, TTL: ttl, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func seq(t *testing.T, store transfer.ObjectStore, volume string) uint64 {
	t.Helper()
	data, _, err := store.Load(t.Context(), lease.HeadKey(volume), lease.MaxRecordSize)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lease.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

func TestKeepAliveRenewsEveryThirdOfTTL(t *testing.T) {
	store, clock := memstore.New(), leasetest.NewClock()
	l, err := manager(t, store, "hostA", clock).Acquire(t.Context(), "db")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(ctx, nil) }()

	clock.BlockUntil(1)
	clock.Advance(ttl/3 - time.Second)
	if got := seq(t, store, "db"); got != 1 {
		t.Errorf("renewed before TTL/3: seq %d", got)
	}
	clock.Advance(time.Second)
	clock.BlockUntil(1) // renewed, sleeping again
	if got := seq(t, store, "db"); got != 2 {
		t.Errorf("after TTL/3: seq %d, want one renewal", got)
	}
	// A publish is a renewal: the next one is due TTL/3 after it.
	clock.Advance(5 * time.Second)
	if err := l.Publish(t.Context(), "s1"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl/3 - 5*time.Second)
	clock.BlockUntil(1)
	if got := seq(t, store, "db"); got != 3 {
		t.Errorf("seq %d, want 3: no renewal right after a publish", got)
	}
	if st := l.Status(); st.Lapsed || st.Fenced != nil || st.Generation != 1 || st.Head != "s1" {
		t.Errorf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("KeepAlive after cancel: %v", err)
	}
}

func TestKeepAliveReportsFencing(t *testing.T) {
	store, clock := memstore.New(), leasetest.NewClock()
	l, err := manager(t, store, "hostA", clock).Acquire(t.Context(), "db")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(t.Context(), nil) }()
	clock.BlockUntil(1)
	if _, err := manager(t, store, "hostB", clock).Takeover(t.Context(), "db", lease.TakeoverOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 3)
	err = <-done
	var f *lease.FencedError
	if !errors.As(err, &f) || f.Op != "renew" || f.Current == nil || f.Current.Owner != "hostB" {
		t.Fatalf("KeepAlive after a takeover: %v, want a *FencedError for renew naming hostB", err)
	}
	if l.Status().Fenced == nil {
		t.Error("status does not show the fencing")
	}
}

func TestKeepAliveRidesOutStoreOutage(t *testing.T) {
	faults := leasetest.NewFaultStore(memstore.New(), 7)
	clock := leasetest.NewClock()
	l, err := manager(t, faults, "hostA", clock).Acquire(t.Context(), "db")
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		err    error
		lapsed bool
	}
	events := make(chan event, 100)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(ctx, func(err error, lapsed bool) { events <- event{err, lapsed} }) }()
	go clock.Run(ctx, 100*time.Millisecond, 200*time.Microsecond)

	faults.SetRates(1, 0) // the store is unreachable
	first := <-events
	if first.err == nil || first.lapsed {
		t.Fatalf("first report: %+v, want a failure that has not lapsed yet", first)
	}
	for ev := range events {
		if ev.err == nil {
			t.Fatal("recovered while the store was down")
		}
		if ev.lapsed {
			break
		}
	}
	if st := l.Status(); !st.Lapsed || st.SinceRenew < ttl-ttl/10 {
		t.Errorf("status during the outage: %+v", st)
	}
	faults.SetRates(0, 0) // back; nobody took the volume
	for ev := range events {
		if ev.err == nil && !ev.lapsed {
			break
		}
	}
	if st := l.Status(); st.Lapsed || st.Fenced != nil {
		t.Errorf("status after recovery: %+v", st)
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("KeepAlive after release: %v", err)
	}
}

// A holder that no longer knows its lease stops renewing it: the lease
// expires instead of being kept alive for nobody.
func TestKeepAliveWhileStopsForALeaseNobodyKnows(t *testing.T) {
	store, clock := memstore.New(), leasetest.NewClock()
	l, err := manager(t, store, "hostA", clock).Acquire(t.Context(), "db")
	if err != nil {
		t.Fatal(err)
	}
	var known atomic.Bool
	known.Store(true)
	forgotten := errors.New("no record of this lease")
	done := make(chan error, 1)
	go func() {
		done <- l.KeepAliveWhile(t.Context(), func() error {
			if known.Load() {
				return nil
			}
			return forgotten
		}, nil)
	}()
	clock.BlockUntil(1)
	clock.Advance(ttl / 3)
	clock.BlockUntil(1) // renewed once, sleeping again
	if got := seq(t, store, "db"); got != 2 {
		t.Fatalf("seq %d, want one renewal while the lease is known", got)
	}
	known.Store(false)
	clock.Advance(ttl / 3)
	if err := <-done; !errors.Is(err, forgotten) {
		t.Fatalf("KeepAliveWhile after the lease was forgotten: %v", err)
	}
	if got := seq(t, store, "db"); got != 2 {
		t.Errorf("seq %d: renewed a lease nobody knows", got)
	}
}
