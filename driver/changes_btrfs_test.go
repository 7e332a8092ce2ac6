package driver

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/portvol/portvol/localcopy/btrfs"
)

// realBtrfs opens a btrfs pool of its own for a test (root, btrfs in the
// kernel, mkfs.btrfs, loop devices; without them the test skips, except
// under CI=true, where it fails).
func realBtrfs(t *testing.T) *btrfs.Copies {
	t.Helper()
	requireRoot(t)
	why := ""
	if err := btrfs.Available(); err != nil {
		why = err.Error()
	}
	dir, err := os.MkdirTemp("/var/tmp", "portvol-driver-btrfs-") // the pool image needs direct I/O: not tmpfs
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var c *btrfs.Copies
	if why == "" {
		c, err = btrfs.Open(context.Background(), btrfs.Options{StateDir: dir, PoolSize: 512 << 20, ForcePool: true})
		if err != nil {
			why = err.Error()
		}
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("btrfs tests cannot run: %s; CI must run them", why)
		}
		t.Skip(why)
	}
	t.Cleanup(func() {
		if err := c.Pool().Unmount(); err != nil {
			t.Errorf("unmounting the test pool: %v", err)
		}
	})
	return c
}

// On btrfs the snapshot after a small write reads only the change, found
// from extent generations against the kept base (btrfs.ChangeSource), and
// what another host restores from it is exact.
func TestSnapshotOnBtrfsReadsOnlyTheChange(t *testing.T) {
	c := realBtrfs(t)
	store := filepath.Join(t.TempDir(), "store")
	a, b := newHost(t, "hostA", store), newHost(t, "hostB", store)
	a.tune = func(d *Driver) { d.copies = c }
	a.start(nil)
	b.start(nil)
	ctx := context.Background()
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0"}})
	data := randomBytes(t, 8<<20)
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
	if st := a.status("v"); st["filesystem"] != "btrfs" {
		t.Fatalf("A's copy is not on btrfs: %v", st)
	}
	page := randomBytes(t, 8192)
	copy(data[3<<20:], page)
	a.publish("v", "a2", func(mp string) {
		f, err := os.OpenFile(filepath.Join(mp, "f"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(page, 3<<20); err != nil {
			t.Fatal(err)
		}
	})
	head, _ := a.status("v")["head_snapshot"].(string)
	bk, err := a.d.storeNow()
	if err != nil {
		t.Fatal(err)
	}
	m, err := bk.Snapshots.Load(ctx, "v", head)
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.BytesRead > 64<<10 {
		t.Errorf("the snapshot after an 8 KiB write into an 8 MiB file read %d bytes", m.Stats.BytesRead)
	}
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if got, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("B restored other data than A wrote (%v)", err)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}

// A host whose btrfs copy holds the previous snapshot pulls the next one
// in place (a writable snapshot of its copy, only the delta written, then
// swapped in): nothing but the delta is fetched or written, and the copy
// equals what the owner published.
func TestPullOnBtrfsRestoresInPlace(t *testing.T) {
	ca, cb := realBtrfs(t), realBtrfs(t)
	store := filepath.Join(t.TempDir(), "store")
	a, b := newHost(t, "hostA", store), newHost(t, "hostB", store)
	a.tune = func(d *Driver) { d.copies = ca }
	b.tune = func(d *Driver) { d.copies = cb }
	a.start(nil)
	b.start(nil)
	ctx := context.Background()
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0"}})
	data, other := randomBytes(t, 8<<20), randomBytes(t, 1<<20)
	a.publish("v", "a1", func(mp string) {
		os.WriteFile(filepath.Join(mp, "f"), data, 0o644)
		os.WriteFile(filepath.Join(mp, "untouched"), other, 0o644)
	})
	if _, err := b.d.Pull(ctx, "v", nil); err != nil {
		t.Fatal(err)
	}
	page := randomBytes(t, 8192)
	copy(data[5<<20:], page)
	a.publish("v", "a2", func(mp string) {
		f, err := os.OpenFile(filepath.Join(mp, "f"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt(page, 5<<20)
	})
	res, err := b.d.Pull(ctx, "v", nil)
	if err != nil {
		t.Fatal(err)
	}
	// In place, the rest of the copy stays where it is: nothing is
	// copied over from the older copy (a restore into a new subvolume
	// copies the 9 MiB it reuses).
	if res.Fetched > 256<<10 || res.Reused != 0 {
		t.Errorf("the pull of an 8 KiB change fetched %d bytes and copied %d from the older copy; want only the delta fetched, nothing copied", res.Fetched, res.Reused)
	}
	dir := b.d.dataDir("v")
	for name, want := range map[string][]byte{"f": data, "untouched": other} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("B's %s after the in-place pull differs from A's (%v)", name, err)
		}
	}
	if st := b.status("v"); st["filesystem"] != "btrfs" || st["local_snapshot"] != a.status("v")["head_snapshot"] {
		t.Errorf("B after the pull: %v", st)
	}
}
