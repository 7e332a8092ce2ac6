package leasetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
)

func testFenced(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	lb, err := b.Takeover(e.ctx, "db", lease.TakeoverOptions{Force: true})
	e.must(err, "forced takeover")
	f := fencedError(t, la.Publish(e.ctx, "s2"))
	if f.Volume != "db" || f.Host != "hostA" || f.Generation != 1 || f.Head != "s1" || f.Op != "publish" ||
		f.Current == nil || f.Current.Owner != "hostB" || f.Current.Generation != 2 {
		t.Errorf("fenced error: %+v", f)
	}
	before := e.inspect("db")
	if before.Head != "s1" {
		t.Errorf("head %q after a fenced publish, want s1", before.Head)
	}
	fencedError(t, la.Renew(e.ctx))
	fencedError(t, la.Release(e.ctx))
	if after := e.inspect("db"); after.Seq != before.Seq {
		t.Errorf("a fenced lease still wrote: seq %d → %d", before.Seq, after.Seq)
	}
	if st := la.Status(); st.Fenced == nil || !errors.Is(st.Fenced, lease.ErrFenced) {
		t.Errorf("status of a fenced lease: %+v", st)
	}
	e.must(lb.Release(e.ctx), "release by hostB")
	fencedError(t, la.Publish(e.ctx, "s3")) // fenced stays fenced, even with the volume free
}

func testResume(t *testing.T, e *env) {
	a := e.host("hostA", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	seq := e.inspect("db").Seq

	a2 := e.host("hostA", nil) // hostA restarted, remembering generation 1
	l2, err := a2.Resume(e.ctx, "db", 1)
	e.must(err, "resume")
	if l2.Generation() != 1 || l2.Head() != "s1" || e.inspect("db").Seq != seq+1 {
		t.Errorf("resumed: generation %d head %q; Resume must renew at once", l2.Generation(), l2.Head())
	}
	fencedError(t, la.Publish(e.ctx, "s2")) // the crashed incarnation is out
	_, err = a2.Resume(e.ctx, "db", 7)
	fencedError(t, err)
	e.must(l2.Release(e.ctx), "release")
	if _, err = e.host("hostA", nil).Resume(e.ctx, "db", 1); !errors.Is(err, lease.ErrReleased) {
		t.Errorf("resume of a released generation: %v, want ErrReleased", err)
	}
	// hostB acquired the released generation: that proves it released.
	b := e.host("hostB", nil)
	lb := e.acquire(b, "db")
	if _, err = e.host("hostA", nil).Resume(e.ctx, "db", 1); !errors.Is(err, lease.ErrReleased) {
		t.Errorf("resume after hostB acquired the released generation: %v, want ErrReleased", err)
	}
	// Two generations on, nothing proves what became of generation 1.
	e.must(lb.Release(e.ctx), "release")
	e.acquire(b, "db")
	_, err = e.host("hostA", nil).Resume(e.ctx, "db", 1)
	if f := fencedError(t, err); f.Current == nil || f.Current.Owner != "hostB" {
		t.Errorf("resume two generations on: %+v", f)
	}
	// Taken over from a generation: lost, not released.
	c := e.host("hostC", nil)
	lc := e.acquire(c, "other")
	if _, err := b.Takeover(e.ctx, "other", lease.TakeoverOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	_, err = e.host("hostC", nil).Resume(e.ctx, "other", lc.Generation())
	if f := fencedError(t, err); f.Current == nil || f.Current.Owner != "hostB" {
		t.Errorf("resume after a takeover: %+v", f)
	}
}

func testSelfHeld(t *testing.T, e *env) {
	e.acquire(e.host("hostA", nil), "db")
	a2 := e.host("hostA", nil)
	_, err := a2.Acquire(e.ctx, "db")
	if h := heldError(t, err); !h.Self || !strings.Contains(err.Error(), "not by this process") {
		t.Errorf("held by this host's id: %v", err)
	}
	l, err := a2.Takeover(e.ctx, "db", lease.TakeoverOptions{Wait: 2 * TTL})
	e.must(err, "takeover from a crashed run")
	if l.Generation() != 2 {
		t.Errorf("generation %d, want 2", l.Generation())
	}

	// A plain Acquire (a Mount without takeover=auto) takes over a lease
	// of this host's id once it has seen it unchanged for a full TTL (a
	// run that died before recording it), but never while it is renewed.
	la := e.acquire(e.host("hostA", nil), "vol")
	a3 := e.host("hostA", nil)
	_, err = a3.Acquire(e.ctx, "vol")
	heldError(t, err)
	e.clock.Advance(TTL - time.Second)
	e.must(la.Renew(e.ctx), "renew")
	_, err = a3.Acquire(e.ctx, "vol")
	heldError(t, err)
	e.clock.Advance(2 * time.Second)
	_, err = a3.Acquire(e.ctx, "vol") // renewed a second ago: live
	if h := heldError(t, err); !h.Self || h.Expired() {
		t.Errorf("a renewed lease of this host's id: %v", err)
	}
	e.clock.Advance(TTL)
	l, err = a3.Acquire(e.ctx, "vol")
	e.must(err, "acquire a lease of this host's id nobody renewed for a TTL")
	if l.Generation() != 2 || l.TookOver() == nil || l.TookOver().From != "hostA" {
		t.Errorf("generation %d, took over %+v; want 2 from hostA", l.Generation(), l.TookOver())
	}
	fencedError(t, la.Publish(e.ctx, "s1")) // the earlier run is out
}

func testRemove(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	err := b.Remove(e.ctx, "db")
	if h := heldError(t, err); h.Op != "remove" || !strings.Contains(err.Error(), "unmount it there first") {
		t.Errorf("remove of a held volume: %v", err)
	}
	e.must(la.Release(e.ctx), "release")
	e.must(b.Remove(e.ctx, "db"), "remove")
	e.must(b.Remove(e.ctx, "db"), "second remove")
	if r := e.inspect("db"); r.State != lease.Removed || r.Owner != "hostB" || r.Generation != 1 || r.Head != "s1" {
		t.Errorf("tombstone: %+v", r)
	}
	if _, err := a.Acquire(e.ctx, "db"); !errors.Is(err, lease.ErrRemoved) {
		t.Errorf("acquire of a removed volume: %v", err)
	}
	if _, err := a.Takeover(e.ctx, "db", lease.TakeoverOptions{Force: true}); !errors.Is(err, lease.ErrRemoved) {
		t.Errorf("takeover of a removed volume: %v", err)
	}
	e.must(a.Revive(e.ctx, "db"), "revive")
	e.must(a.Revive(e.ctx, "db"), "second revive")
	l := e.acquire(b, "db")
	if l.Generation() != 2 || l.Head() != "" {
		t.Errorf("revived volume: generation %d head %q, want 2 and empty", l.Generation(), l.Head())
	}
	if err := a.Revive(e.ctx, "db"); err == nil || !strings.Contains(err.Error(), "was not removed") {
		t.Errorf("revive of a live volume: %v", err)
	}

	e.must(a.Remove(e.ctx, "fresh"), "remove of a never mounted volume")
	if _, err := b.Acquire(e.ctx, "fresh"); !errors.Is(err, lease.ErrRemoved) {
		t.Errorf("acquire after the tombstone: %v", err)
	}
	e.must(a.Revive(e.ctx, "fresh"), "revive")
	if l := e.acquire(b, "fresh"); l.Generation() != 1 {
		t.Errorf("generation %d, want 1", l.Generation())
	}
}

// testUndelete: a removed volume comes back released with the head it had,
// at a generation no lower than before, and the next holder restores it.
func testUndelete(t *testing.T, e *env) {
	a, b := e.host("hostA", nil), e.host("hostB", nil)
	la := e.acquire(a, "db")
	e.must(la.Publish(e.ctx, "s1"), "publish")
	e.must(la.Release(e.ctx), "release")
	lb := e.acquire(b, "db")
	e.must(lb.Release(e.ctx), "release")
	e.must(b.Remove(e.ctx, "db"), "remove")

	e.must(a.Undelete(e.ctx, "db", "s1", 1), "undelete")
	e.must(a.Undelete(e.ctx, "db", "s1", 1), "second undelete")
	if r := e.inspect("db"); r.State != lease.Released || r.Head != "s1" || r.HeadGeneration != 1 || r.Generation != 2 {
		t.Errorf("undeleted record: %+v, want released at generation 2 with head s1", r)
	}
	l := e.acquire(b, "db")
	if l.Generation() != 3 || l.Head() != "s1" {
		t.Errorf("acquired after undelete: generation %d head %q, want 3 and s1", l.Generation(), l.Head())
	}
	if err := a.Undelete(e.ctx, "db", "s1", 1); err == nil || !strings.Contains(err.Error(), "exists again") {
		t.Errorf("undelete of a live volume: %v", err)
	}
	if err := a.Undelete(e.ctx, "db", "", 3); err == nil {
		t.Error("undelete with a head generation but no head was accepted")
	}

	// A volume whose head record is gone comes back at the head's generation.
	e.must(a.Undelete(e.ctx, "gone", "s9", 4), "undelete without a record")
	if r := e.inspect("gone"); r.State != lease.Released || r.Generation != 4 || r.Head != "s9" {
		t.Errorf("undeleted missing record: %+v", r)
	}
	if l := e.acquire(b, "gone"); l.Generation() != 5 {
		t.Errorf("generation %d, want 5", l.Generation())
	}
}
