package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/metadata"
)

// An unreachable store never makes a known volume "missing" (dockerd would
// forget it): Get and List answer from this host's records and say the
// store is unreachable; Mount and Create fail saying so.
func TestStoreUnreachable(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, nil, "hostA")
	e, f := es[0], fs[0]
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	f.down.Store(true)
	eventually(t, "Get to notice", func() bool { return strings.HasPrefix(e.status("v")["store"].(string), "unreachable") })
	if vols := e.ok("VolumeDriver.List", map[string]any{})["Volumes"].([]any); len(vols) != 1 {
		t.Errorf("List while unreachable: %v", vols)
	}
	if msg := e.fail("VolumeDriver.Get", map[string]string{"Name": "other"}); strings.Contains(msg, "does not exist") || !strings.Contains(msg, "cannot tell") {
		t.Errorf("Get of an unknown name while unreachable: %q", msg)
	} else if !strings.Contains(msg, "ago failed") || !strings.Contains(msg, "tried again in") {
		// The failed read was of another volume: the message must not
		// read as if it were about this one.
		t.Errorf("Get of an unknown name while the store is backed off: %q, want when it failed and when it is tried again", msg)
	}
	if msg := e.fail("VolumeDriver.Mount", mountID("v", "a")); !strings.Contains(msg, "store unreachable") {
		t.Errorf("Mount while unreachable: %q", msg)
	}
	if msg := e.fail("VolumeDriver.Create", map[string]string{"Name": "w"}); !strings.Contains(msg, "store unreachable") {
		t.Errorf("Create while unreachable: %q", msg)
	}
	if e.mounts("v") != 0 {
		t.Error("failed Mount counted")
	}

	// A start with the store down: listening and answering from records.
	e.stop()
	e.noWait = true
	e.start(nil)
	if st := e.status("v"); !strings.HasPrefix(st["store"].(string), "unreachable") || st["local"] != "ready" {
		t.Errorf("status at a start without store: %v", st)
	}
	if msg := e.fail("VolumeDriver.Mount", mountID("v", "a")); !strings.Contains(msg, "store unreachable") || !strings.Contains(msg, "connection refused") {
		t.Errorf("Mount at a start without store: %q", msg)
	}
	f.down.Store(false)
	eventually(t, "the store to be reached", func() bool { return e.d.backend.Load() != nil })
	e.ok("VolumeDriver.Mount", mountID("v", "a"))
	e.ok("VolumeDriver.Unmount", mountID("v", "a"))
}

// A name removed and created again elsewhere is a new volume: a host's copy
// of the old one is not mistaken for it.
func TestRecreatedNameIsANewVolume(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "old"), []byte("old"), 0o644) })
	b.publish("v", "b1", func(string) {}) // B holds a copy of the old volume

	a.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"takeover": "auto"}})
	a.publish("v", "a2", func(mp string) { os.WriteFile(filepath.Join(mp, "new"), []byte("new"), 0o644) })

	mp := b.ok("VolumeDriver.Mount", mountID("v", "b2"))["Mountpoint"].(string)
	if _, err := os.Stat(filepath.Join(mp, "old")); err == nil {
		t.Error("B mounted its copy of the removed volume")
	}
	if got, _ := os.ReadFile(filepath.Join(mp, "new")); string(got) != "new" {
		t.Errorf("B reads %q", got)
	}
	if st := b.status("v"); st["takeover"] != "auto" || st["generation"].(float64) < 4 {
		t.Errorf("B's status of the new volume: %v (generations must keep rising)", st)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b2"))
}

// Volumes made by the single-host portvol (records without a store record)
// join the store at the first start: nothing is forgotten or lost.
func TestSingleHostVolumesJoinTheStore(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.stop()
	db, err := metadata.Open(a.dbPath, metadata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := ParseOptions(nil)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := db.CreateVolume(context.Background(), metadata.Volume{Name: "old", Options: opts, CreatedAt: created, CreatedBy: "hostA", Local: metadata.LocalPresent}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.MkdirAll(filepath.Join(a.stateDir, "volumes", "old", "data"), 0o755)
	os.WriteFile(filepath.Join(a.stateDir, "volumes", "old", "data", "f"), []byte("from before"), 0o644)
	a.start(nil)

	eventually(t, "the volume to reach the store", func() bool {
		_, out, _ := b.call(context.Background(), "VolumeDriver.Get", map[string]string{"Name": "old"})
		return out["Err"] == nil
	})
	if st := a.status("old"); st["local"] != "ready" {
		t.Errorf("status: %v", st)
	}
	a.publish("old", "a1", func(string) {})
	mp := b.ok("VolumeDriver.Mount", mountID("old", "b1"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "from before" {
		t.Errorf("B reads %q", got)
	}
	b.ok("VolumeDriver.Unmount", mountID("old", "b1"))
}

// docker volume rm moves the volume to the store's trash; undelete brings
// it back with its last snapshot.
func TestRemoveAndUndelete(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 30*time.Second, nil, "hostA")
	e := es[0]
	ctx := context.Background()
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	e.publish("v", "a", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("kept in the trash"), 0o644) })
	e.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	if msg := e.fail("VolumeDriver.Get", map[string]string{"Name": "v"}); !strings.Contains(msg, "does not exist") {
		t.Errorf("Get after remove: %q", msg)
	}
	if _, err := e.d.Undelete(ctx, "never"); err == nil || !strings.Contains(err.Error(), "not in the trash") {
		t.Errorf("undelete of an unknown name: %v", err)
	}
	res, err := e.d.Undelete(ctx, "v")
	if err != nil || res.Head == "" {
		t.Fatalf("undelete: %+v, %v", res, err)
	}
	if _, err := e.d.Undelete(ctx, "v"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second undelete: %v", err)
	}
	mp := e.ok("VolumeDriver.Mount", mountID("v", "b"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "kept in the trash" {
		t.Errorf("undeleted volume reads %q", got)
	}
	e.ok("VolumeDriver.Unmount", mountID("v", "b"))
	e.released("v")

	// Past the retention the trash is purged (at start, and every hour).
	e.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	e.stop()
	e.tune = func(d *Driver) { d.trashRetention = time.Nanosecond }
	e.start(nil)
	eventually(t, "the purge", func() bool {
		entries, err := catalog.Trash(ctx, e.d.backend.Load().Store, "v")
		return err == nil && len(entries) == 0
	})
	if _, err := e.d.Undelete(ctx, "v"); err == nil || !strings.Contains(err.Error(), "not in the trash") {
		t.Errorf("undelete after the purge: %v", err)
	}
}
