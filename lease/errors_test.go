package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer/memstore"
)

// The messages are what an operator reads in `docker run` output and in
// the plugin log: each says who holds what and what to do.
func TestHeldErrorMessages(t *testing.T) {
	base := lease.HeldError{Volume: "db", Owner: "hostA", Generation: 7, Head: "s41", Unchanged: 12 * time.Second, TTL: 30 * time.Second}
	with := func(f func(*lease.HeldError)) *lease.HeldError { e := base; f(&e); return &e }
	for _, tc := range []struct {
		name    string
		err     *lease.HeldError
		expired bool
		want    string
	}{
		{"live", &base, false,
			`volume "db" is held by host "hostA" (generation 7, unchanged for 12s of a 30s lease); wait for it to be released, or if hostA is gone run: portvol takeover db`},
		{"after waiting", with(func(e *lease.HeldError) { e.Waited = 20 * time.Second; e.Unchanged = 20 * time.Second }), false,
			`volume "db" is still held by host "hostA" after waiting 20s (generation 7, unchanged for 20s of a 30s lease); wait for it to be released, or if hostA is gone run: portvol takeover db`},
		{"expired", with(func(e *lease.HeldError) { e.Unchanged = 31 * time.Second }), true,
			`volume "db" is held by host "hostA" (generation 7), which has not renewed it for 31s (lease 30s): hostA looks gone; to take the volume over run: portvol takeover db (or mount with -o takeover=auto); whatever hostA wrote after snapshot "s41" is lost`},
		{"expired, never published", with(func(e *lease.HeldError) { e.Unchanged = 45 * time.Second; e.Head = "" }), true,
			`volume "db" is held by host "hostA" (generation 7), which has not renewed it for 45s (lease 30s): hostA looks gone; to take the volume over run: portvol takeover db (or mount with -o takeover=auto); nothing hostA wrote is kept, it never published a snapshot`},
		{"takeover refused", with(func(e *lease.HeldError) { e.Op = "takeover" }), false,
			`volume "db" is held by host "hostA" (generation 7, unchanged for 12s of a 30s lease): refusing to take over a live lease; wait until it has been unchanged for 30s, or if you are sure hostA is gone run: portvol takeover --force db`},
		{"remove refused", with(func(e *lease.HeldError) { e.Op = "remove" }), false,
			`volume "db" is held by host "hostA" (generation 7, unchanged for 12s of a 30s lease): cannot remove a volume in use; unmount it there first, or if hostA is gone run: portvol takeover db`},
		{"own id", with(func(e *lease.HeldError) { e.Self = true; e.Unchanged = 400 * time.Millisecond }), false,
			`volume "db" is held by this host's id "hostA" (generation 7, unchanged for 400ms of a 30s lease) but not by this process: a previous run crashed before recording it, or another host uses the same host id; once it has been unchanged for 30s this host takes it over by itself (at its next Mount of the volume, or at the plugin's next recovery round, every minute), or run: portvol takeover db`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("message:\n got %s\nwant %s", got, tc.want)
			}
			if !errors.Is(tc.err, lease.ErrHeld) || errors.Is(tc.err, lease.ErrExpired) != tc.expired {
				t.Errorf("matches ErrHeld %v, ErrExpired %v; want true, %v", errors.Is(tc.err, lease.ErrHeld), errors.Is(tc.err, lease.ErrExpired), tc.expired)
			}
		})
	}
}

func TestFencedErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  lease.FencedError
		want string
	}{
		{"taken over", lease.FencedError{Volume: "db", Host: "hostA", Generation: 7, Head: "s41", Op: "publish",
			Current: &lease.Record{State: lease.Held, Owner: "hostB", Generation: 8}},
			`volume "db": publish refused: host "hostA" lost ownership (it held generation 7; host "hostB" now holds generation 8); stop writing to this copy and keep it aside, its changes after snapshot "s41" are not in the store`},
		{"released since", lease.FencedError{Volume: "db", Host: "hostA", Generation: 7, Op: "renew",
			Current: &lease.Record{State: lease.Released, Owner: "hostB", Generation: 8}},
			`volume "db": renew refused: host "hostA" lost ownership (it held generation 7; it is now released at generation 8 by host "hostB"); stop writing to this copy and keep it aside, its unpublished changes are not in the store`},
		{"gone", lease.FencedError{Volume: "db", Host: "hostA", Generation: 7, Op: "release"},
			`volume "db": release refused: host "hostA" lost ownership (it held generation 7; its head record is gone); stop writing to this copy and keep it aside, its unpublished changes are not in the store`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("message:\n got %s\nwant %s", got, tc.want)
			}
			if !errors.Is(&tc.err, lease.ErrFenced) || errors.Is(&tc.err, lease.ErrHeld) {
				t.Error("a FencedError must match ErrFenced only")
			}
		})
	}
}

func TestNamesAndOptions(t *testing.T) {
	m, err := lease.New(memstore.New(), lease.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "..", "../x", "a/b"} {
		if _, err := m.Inspect(context.Background(), name); !errors.Is(err, volname.ErrInvalid) {
			t.Errorf("Inspect(%q) = %v, want a refused name", name, err)
		}
	}
	if _, err := lease.New(nil, lease.Options{Host: "bad/host"}); err == nil {
		t.Error("New accepted a host id with a slash")
	}
	if _, err := lease.New(nil, lease.Options{Host: "h", TTL: time.Millisecond}); err == nil {
		t.Error("New accepted a 1ms TTL")
	}
	m, err = lease.New(nil, lease.Options{Host: "h"})
	if err != nil || m.TTL() != lease.DefaultTTL || m.Host() != "h" {
		t.Errorf("defaults: TTL %v host %q, %v", m.TTL(), m.Host(), err)
	}
}
