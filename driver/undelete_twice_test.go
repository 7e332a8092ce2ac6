package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/faultstore"
)

// An undelete interrupted while it copies the volume's objects back (its
// head record already names the snapshot), then a Remove, then an undelete:
// the Remove made a second trash entry holding only the objects copied back
// so far and the head record's copy, and the undelete took that newest
// entry and brought back a head whose snapshot was not in the store; the
// host's next release then failed for ever holding the lease. Found by
// TestRandomDriver (seed 958273, knownBugs.undelete).
func TestRemoveDuringUndeleteThenUndelete(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	e := newHost(t, "hostA", store)
	e.ttl = time.Second
	var faults *faultstore.Store
	e.wrap = func(st transfer.ObjectStore) transfer.ObjectStore { faults = faultstore.New(st, 1); return faults }
	e.start(nil)
	ctx := context.Background()

	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	e.publish("v", "a", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("kept"), 0o644) })
	e.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})

	// The undelete copies the first object back, then the store breaks off.
	faults.Inject(faultstore.OpPut, faultstore.Pass, faultstore.Fail)
	if _, err := e.d.Undelete(ctx, "v"); err == nil || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("interrupted undelete: %v", err)
	}
	// A Remove now must not split the volume over two trash entries.
	if msg := e.fail("VolumeDriver.Remove", map[string]string{"Name": "v"}); !strings.Contains(msg, "being undeleted") {
		t.Errorf("Remove during an undelete: %q", msg)
	}
	res, err := e.d.Undelete(ctx, "v")
	if err != nil || res.Head == "" {
		t.Fatalf("undelete: %+v, %v", res, err)
	}
	if _, err := e.d.backend.Load().Store.Stat(ctx, snapshot.ManifestKey("v", res.Head)); err != nil {
		t.Fatalf("the undeleted head %s is not in the store: %v", res.Head, err)
	}
	mp := e.ok("VolumeDriver.Mount", mountID("v", "b"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "kept" {
		t.Errorf("undeleted volume reads %q", got)
	}
	os.WriteFile(filepath.Join(mp, "g"), []byte("after"), 0o644)
	e.ok("VolumeDriver.Unmount", mountID("v", "b"))
	e.released("v")
}

// An undelete whose trash entry lacks the head snapshot's manifest (gone
// from the store) refuses, naming what is missing, and leaves the head
// record a tombstone: the volume is not brought back pointing at nothing.
func TestUndeleteRefusesAMissingHeadSnapshot(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA")
	e := es[0]
	ctx := context.Background()
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	e.publish("v", "a", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("x"), 0o644) })
	head := e.status("v")
	e.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	st := e.d.backend.Load().Store
	entries, err := catalog.Trash(ctx, st, "v")
	if err != nil || len(entries) != 1 {
		t.Fatalf("trash: %v, %v", entries, err)
	}
	var manifests []string
	st.List(ctx, catalog.TrashKey("v", entries[0].ID, "snapshots/v/"), func(o transfer.ObjectInfo) error {
		manifests = append(manifests, o.Key)
		return nil
	})
	if len(manifests) == 0 {
		t.Fatalf("no manifest in the trash entry (head %v)", head)
	}
	for _, k := range manifests {
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.d.Undelete(ctx, "v")
	if err == nil || !strings.Contains(err.Error(), "lacks its head snapshot") || !strings.Contains(err.Error(), entries[0].ID) {
		t.Fatalf("undelete of an entry without its head snapshot: %v", err)
	}
	o, err := e.d.backend.Load().Leases.Inspect(ctx, "v")
	if err != nil || o.Record.State != lease.Removed {
		t.Errorf("head record after the refused undelete: %+v, %v", o.Record, err)
	}
}

// A release whose parent snapshot (the head the lease names) is not in the
// store publishes a snapshot without a parent and releases, instead of
// retrying for ever while it renews the lease: another host then mounts
// the volume with every write.
func TestReleaseWithoutParentSnapshotPublishes(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	ctx := context.Background()
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("first"), 0o644) })
	o, err := a.d.backend.Load().Leases.Inspect(ctx, "v")
	if err != nil || o.Record.Head == "" {
		t.Fatalf("head record: %+v, %v", o.Record, err)
	}
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a2"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "g"), []byte("second"), 0o644)
	if err := a.d.backend.Load().Store.Delete(ctx, snapshot.ManifestKey("v", o.Record.Head)); err != nil {
		t.Fatal(err)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
	a.released("v")
	mp = b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	for f, want := range map[string]string{"f": "first", "g": "second"} {
		if got, err := os.ReadFile(filepath.Join(mp, f)); err != nil || string(got) != want {
			t.Errorf("B reads %s: %q, %v", f, got, err)
		}
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")
}
