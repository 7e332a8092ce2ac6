package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A following host keeps its copy at the head as the owner publishes,
// fetching only the delta each time, and stops when it comes to own the
// volume; a cancelled follow returns the context's error.
func TestFollowKeepsUpAndStopsWhenOwned(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	data := randomBytes(t, 4<<20)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0"}})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })

	pulls := make(chan PullResult, 16)
	type end struct {
		res PullResult
		err error
	}
	done := make(chan end, 1)
	go func() {
		res, err := b.d.Follow(context.Background(), "v", 20*time.Millisecond, func(r PullResult) { pulls <- r }, nil, nil)
		done <- end{res, err}
	}()
	next := func(what string) PullResult {
		t.Helper()
		select {
		case r := <-pulls:
			return r
		case e := <-done:
			t.Fatalf("follow ended before %s: %+v, %v", what, e.res, e.err)
		case <-time.After(20 * time.Second):
			t.Fatalf("no pull for %s", what)
		}
		return PullResult{}
	}
	first := next("the first snapshot")
	if first.Fetched < 4<<20 {
		t.Errorf("first pull fetched %d bytes of 4 MiB", first.Fetched)
	}
	for i := range 2 {
		copy(data[i<<20:i<<20+64<<10], randomBytes(t, 64<<10))
		a.publish("v", "a2", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
		head := a.status("v")["local_snapshot"]
		r := next("a new head")
		if r.Snapshot == first.Snapshot || r.Snapshot != head {
			t.Errorf("pull %d: snapshot %s, head %v, first %s", i, r.Snapshot, head, first.Snapshot)
		}
		if r.Fetched > 1<<20 || r.Reused < 3<<20 {
			t.Errorf("pull %d after a 64 KiB change fetched %d bytes, reused %d: want only the delta", i, r.Fetched, r.Reused)
		}
		got, err := os.ReadFile(filepath.Join(b.d.dataDir("v"), "f"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("pull %d: B's copy differs from what A published (%v)", i, err)
		}
	}
	select {
	case r := <-pulls:
		t.Errorf("a pull without a new snapshot: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}

	// B mounts: it owns the volume now, and the follow ends by itself.
	before := fs[1].gotten.Load()
	b.ok("VolumeDriver.Mount", mountID("v", "b1"))
	if n := fs[1].gotten.Load() - before; n > 64<<10 {
		t.Errorf("B's Mount after following read %d bytes from the store", n)
	}
	select {
	case e := <-done:
		if e.err != nil || !e.res.Owned || !strings.Contains(e.res.Message, "following stopped") {
			t.Errorf("follow after B mounted: %+v, %v", e.res, e.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the follow did not stop when B came to own the volume")
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")

	// Ctrl-C: the follow returns the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		res, err := a.d.Follow(ctx, "v", 20*time.Millisecond, nil, nil, nil)
		done <- end{res, err}
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case e := <-done:
		if !errors.Is(e.err, context.Canceled) || !strings.Contains(e.res.Message, "stopped following") {
			t.Errorf("cancelled follow: %+v, %v", e.res, e.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a cancelled follow did not return")
	}
	if _, err := a.d.Follow(context.Background(), "nope", 0, nil, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("follow of an unknown volume: %v", err)
	}
}

// -o standby=hostB: B's plugin follows the volume by itself while A owns
// it, stops while B owns it, and follows again once B let it go.
func TestStandbyHostsFollow(t *testing.T) {
	requireRoot(t)
	fast := func(d *Driver) { d.standby = standbyTimes{scan: 50 * time.Millisecond, follow: 20 * time.Millisecond} }
	es, _ := hosts(t, 30*time.Second, fast, "hostA", "hostB")
	a, b := es[0], es[1]
	if msg := a.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"standby": "hostB,bad host"}}); !strings.Contains(msg, "invalid host id") {
		t.Errorf("a bad standby host: %q", msg)
	}
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0", "standby": " hostB,hostB"}})
	if got := a.status("v")["options"]; got != nil {
		if opts, _ := got.(map[string]any); opts["standby"] != "hostB" {
			t.Errorf("standby normalised to %v", opts["standby"])
		}
	}
	data := randomBytes(t, 2<<20)
	follows := func(what string) {
		t.Helper()
		head := a.status("v")["local_snapshot"]
		eventually(t, "B to hold "+what, func() bool { return b.status("v")["local_snapshot"] == head })
		got, err := os.ReadFile(filepath.Join(b.d.dataDir("v"), "f"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("B's copy after following %s differs from A's (%v)", what, err)
		}
	}
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
	follows("the first snapshot")
	copy(data[:4096], randomBytes(t, 4096))
	a.publish("v", "a2", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
	follows("A's second snapshot")

	// B owns it for a while, then A again: B follows again.
	b.ok("VolumeDriver.Mount", mountID("v", "b1"))
	time.Sleep(200 * time.Millisecond) // scans while B owns it start nothing
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")
	copy(data[:4096], randomBytes(t, 4096))
	a.publish("v", "a3", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
	follows("A's snapshot after B let the volume go")
	// A, not a standby host, never follows: it owns, releases, and its
	// copy stays where it was.
	if st := a.status("v"); st["lease"] != "released" {
		t.Errorf("A's status: %v", st)
	}
}
