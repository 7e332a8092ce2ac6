package leasetest

import (
	"errors"
	"testing"

	"github.com/portvol/portvol/lease"
)

// unknownRelease makes l's release end with an unknown outcome: the write
// is applied (apply) or not, its answer is lost, and every read that could
// settle it fails.
func unknownRelease(t *testing.T, e *env, f *FaultStore, l *lease.Lease, apply bool) {
	t.Helper()
	fault := Fail
	if apply {
		fault = Lose
	}
	f.Inject(OpUpdate, fault)
	f.Inject(OpLoad, Fail, Fail, Fail, Fail)
	if err := l.Release(e.ctx); err == nil || errors.Is(err, lease.ErrFenced) {
		t.Fatalf("release with its answer and every read lost: %v; want an unknown outcome", err)
	}
	if st := l.Status(); st.Released || st.Fenced != nil {
		t.Fatalf("after a release of unknown outcome the lease claims to know: %+v", st)
	}
}

// A holder whose release has an unknown outcome settles it before acting
// on either belief: still held (and then a late copy of the release can
// no longer apply), released (whoever took the volume since), or lost.
func testSettle(t *testing.T, e *env) {
	b := e.host("hostB", nil)
	for _, tc := range []struct {
		name  string
		apply bool
		then  func(t *testing.T, v string) // what the other hosts do meanwhile
		want  error                        // nil: still held
	}{
		{"NotApplied", false, nil, nil},
		{"Applied", true, nil, lease.ErrReleased},
		{"AppliedAndAcquiredElsewhere", true, func(t *testing.T, v string) { e.acquire(b, v) }, lease.ErrReleased},
		{"AppliedAndRemoved", true, func(t *testing.T, v string) { e.must(b.Remove(e.ctx, v), "remove") }, lease.ErrReleased},
		{"NotAppliedAndTakenOver", false, func(t *testing.T, v string) {
			_, err := b.Takeover(e.ctx, v, lease.TakeoverOptions{Force: true})
			e.must(err, "forced takeover")
		}, lease.ErrFenced},
		{"AppliedTwoGenerationsAgo", true, func(t *testing.T, v string) {
			e.must(e.acquire(b, v).Release(e.ctx), "release")
			e.acquire(b, v)
		}, lease.ErrFenced}, // nothing proves the release applied: treated as lost
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFaultStore(e.store, 1)
			a := e.host("hostA", f)
			v := "db-" + tc.name
			l := e.acquire(a, v)
			e.must(l.Publish(e.ctx, "s1"), "publish")
			unknownRelease(t, e, f, l, tc.apply)
			if tc.then != nil {
				tc.then(t, v)
			}
			err := l.Settle(e.ctx)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Settle: %v; want the lease still held", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Settle: %v; want %v", err, tc.want)
			}
			if again := l.Settle(e.ctx); (again == nil) != (err == nil) {
				t.Errorf("Settle again: %v, first %v", again, err)
			}
			if tc.want != nil {
				if err := l.Renew(e.ctx); !errors.Is(err, tc.want) {
					t.Errorf("Renew after Settle: %v; want %v", err, tc.want)
				}
				return
			}
			// Still held: the settling renewal fenced off the release's
			// late copy, and other hosts wait.
			if r := e.inspect(v); r.State != lease.Held || r.Owner != "hostA" || r.Generation != l.Generation() {
				t.Errorf("record after Settle: %+v", r)
			}
			if _, err := b.Acquire(e.ctx, v); !errors.Is(err, lease.ErrHeld) {
				t.Errorf("B's Acquire after A settled: %v", err)
			}
			e.must(l.Release(e.ctx), "release after Settle")
			e.acquire(b, v)
		})
	}
}

// A takeover note cleared by a removal and revival of the next generation
// proves nothing about ours: Settle must not take it for our release.
func testSettleAfterTakeoverAndRevival(t *testing.T, e *env) {
	f := NewFaultStore(e.store, 1)
	a, b := e.host("hostA", f), e.host("hostB", nil)
	l := e.acquire(a, "db")
	unknownRelease(t, e, f, l, false)
	lb, err := b.Takeover(e.ctx, "db", lease.TakeoverOptions{Force: true})
	e.must(err, "forced takeover")
	e.must(lb.Release(e.ctx), "release")
	e.must(b.Remove(e.ctx, "db"), "remove")
	e.must(b.Revive(e.ctx, "db"), "revive")
	if r := e.inspect("db"); r.Generation != l.Generation()+1 || r.Takeover != nil {
		t.Fatalf("revived record %+v: the case this test is about needs generation %d without a takeover note", r, l.Generation()+1)
	}
	if err := l.Settle(e.ctx); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("Settle after a takeover, removal and revival: %v; want ErrFenced", err)
	}
}
