package leasetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/portvol/portvol/lease"
)

func testCorrupt(t *testing.T, e *env) {
	other, err := lease.Encode(lease.Record{Version: 1, Volume: "other", State: lease.Held, Owner: "hostX",
		Generation: 3, Seq: 9, Nonce: strings.Repeat("ab", 16), TTLMS: 1000})
	e.must(err, "encode")
	for _, tc := range []struct {
		volume, data string
		want         error
		says         string
	}{
		{"garbage", "not json at all", lease.ErrCorrupt, "volumes/garbage/head.json"},
		{"newer", `{"version": 2, "owner": "hostZ", "fancy": true}`, lease.ErrVersion, "upgrade portvol"},
		{"moved", string(other), lease.ErrCorrupt, `names volume "other"`},
	} {
		key := lease.HeadKey(tc.volume)
		e.must(e.store.Put(e.ctx, key, strings.NewReader(tc.data), int64(len(tc.data))), "put")
		m := e.host("hostA", nil)
		_, err := m.Acquire(e.ctx, tc.volume)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Acquire: %v; want %v saying %q", tc.volume, err, tc.want, tc.says)
		}
		_, err = m.Takeover(e.ctx, tc.volume, lease.TakeoverOptions{Force: true})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: forced Takeover: %v; want %v", tc.volume, err, tc.want)
		}
		if err := m.Remove(e.ctx, tc.volume); !errors.Is(err, tc.want) {
			t.Errorf("%s: Remove: %v; want %v", tc.volume, err, tc.want)
		}
		if data, _, err := e.store.Load(e.ctx, key, lease.MaxRecordSize); err != nil || string(data) != tc.data {
			t.Errorf("%s: the unreadable record was changed to %q (%v)", tc.volume, data, err)
		}
	}
}

func testLostResponses(t *testing.T, e *env) {
	f := NewFaultStore(e.store, 1)
	a := e.host("hostA", f)

	f.Inject(OpCreate, Lose)
	l := e.acquire(a, "db")
	if l.Generation() != 1 {
		t.Errorf("acquire with a lost response: generation %d, want 1", l.Generation())
	}
	f.Inject(OpUpdate, Lose)
	e.must(l.Publish(e.ctx, "s1"), "publish with a lost response")
	f.Inject(OpUpdate, Fail, Fail)
	e.must(l.Publish(e.ctx, "s2"), "publish after two transient failures")
	if r := e.inspect("db"); r.Head != "s2" {
		t.Errorf("head %q, want s2", r.Head)
	}

	// The response is lost and so are all re-reads: the outcome is unknown.
	f.Inject(OpUpdate, Lose)
	f.Inject(OpLoad, Fail, Fail, Fail, Fail)
	err := l.Publish(e.ctx, "s3")
	if err == nil || errors.Is(err, lease.ErrFenced) || !strings.Contains(err.Error(), "outcome is unknown") {
		t.Fatalf("publish with an unknown outcome: %v", err)
	}
	e.must(l.Renew(e.ctx), "renew after an unknown outcome") // settles: s3 was applied
	if r := e.inspect("db"); r.Head != "s3" || l.Head() != "s3" {
		t.Errorf("head %q, lease head %q; want s3", r.Head, l.Head())
	}

	// Every attempt fails before reaching the store.
	f.Inject(OpUpdate, Fail, Fail, Fail, Fail)
	if err := l.Publish(e.ctx, "s4"); err == nil || errors.Is(err, lease.ErrFenced) {
		t.Errorf("publish failing four times: %v", err)
	}
	e.must(l.Publish(e.ctx, "s5"), "publish after the store recovered")
	f.Inject(OpUpdate, Lose)
	e.must(l.Release(e.ctx), "release with a lost response")
	if r := e.inspect("db"); r.State != lease.Released || r.Head != "s5" {
		t.Errorf("after release: %+v", r)
	}

	// An acquisition whose outcome is unknown is adopted by the next try.
	f.Inject(OpCreate, Lose)
	f.Inject(OpLoad, Pass, Fail, Fail, Fail, Fail)
	if _, err := a.Acquire(e.ctx, "db2"); err == nil || errors.Is(err, lease.ErrHeld) {
		t.Fatalf("acquire with an unknown outcome: %v", err)
	}
	l2 := e.acquire(a, "db2")
	if l2.Generation() != 1 {
		t.Errorf("re-acquire after an unknown outcome: generation %d, want 1 (our own write, adopted)", l2.Generation())
	}
	e.must(l2.Publish(e.ctx, "t1"), "publish on the adopted lease")
	if f.Injected(Lose) != 5 {
		t.Errorf("%d lost responses injected, want 5", f.Injected(Lose))
	}
	data, _, err := e.store.Load(e.ctx, lease.HeadKey("db2"), lease.MaxRecordSize)
	e.must(err, "load")
	if !bytes.Contains(data, []byte(`"t1"`)) {
		t.Errorf("db2 head record lacks t1: %s", data)
	}
}
