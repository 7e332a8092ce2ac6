package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/needs"
	"github.com/portvol/portvol/localcopy/btrfs"
)

// requireBtrfs skips without root, btrfs or loop devices, except under
// CI=true, where the test fails: CI must run it.
func requireBtrfs(t *testing.T) { needs.Btrfs(t, btrfs.Available) }

// withBtrfs makes e's driver keep new copies in a real btrfs pool of its
// own (512M, in its state directory), unmounted when the test ends.
func withBtrfs(t *testing.T, e *env) *btrfs.Copies {
	t.Helper()
	c, err := btrfs.Open(context.Background(), btrfs.Options{StateDir: e.stateDir, PoolSize: 512 << 20, ForcePool: true})
	if err != nil {
		t.Fatalf("opening a btrfs pool: %v", err)
	}
	t.Cleanup(func() {
		e.stop()
		entries, _ := os.ReadDir(e.root)
		for _, en := range entries {
			for range 4 {
				if (sysMounter{}).Unmount(filepath.Join(e.root, en.Name())) != nil {
					break
				}
			}
		}
		if err := c.Pool().Unmount(); err != nil {
			t.Errorf("unmounting the test pool: %v", err)
		}
	})
	prev := e.tune
	e.tune = func(d *Driver) {
		if prev != nil {
			prev(d)
		}
		d.copies = c
	}
	return c
}

// subvolumeRoot reports whether dir is the root of a btrfs subvolume.
func subvolumeRoot(t *testing.T, dir string) bool {
	t.Helper()
	var st syscall.Stat_t
	var sf unix.Statfs_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(dir, &sf); err != nil {
		t.Fatal(err)
	}
	return sf.Type == unix.BTRFS_SUPER_MAGIC && st.Ino == 256
}

// On a real btrfs pool: a directory volume from before moves into a
// subvolume with portvol convert and keeps its data; a new volume is a
// subvolume whose size limit stops a writer with EDQUOT; the final
// snapshot's instant is kept as the base.
func TestBtrfsVolumes(t *testing.T) {
	requireBtrfs(t)
	e := newHost(t, "hostA", filepath.Join(t.TempDir(), "store"))
	e.start(nil) // directories
	e.ok("VolumeDriver.Create", map[string]any{"Name": "old", "Opts": map[string]string{"snapshot_interval": "0"}})
	e.publish("old", "m1", func(mp string) {
		os.WriteFile(filepath.Join(mp, "f"), []byte("from the directory days"), 0o640)
		os.Link(filepath.Join(mp, "f"), filepath.Join(mp, "g"))
	})
	e.stop()
	withBtrfs(t, e)
	e.start(nil)

	ctx := context.Background()
	e.ok("VolumeDriver.Mount", mountID("old", "m2"))
	if _, err := e.d.Convert(ctx, "old"); !errors.Is(err, ErrInUse) {
		t.Errorf("Convert of a mounted volume: %v", err)
	}
	e.ok("VolumeDriver.Unmount", mountID("old", "m2"))
	e.released("old")
	res, err := e.d.Convert(ctx, "old")
	if err != nil || res.Filesystem != "btrfs" {
		t.Fatalf("Convert: %+v, %v", res, err)
	}
	mp := e.ok("VolumeDriver.Mount", mountID("old", "m3"))["Mountpoint"].(string)
	if !subvolumeRoot(t, mp) {
		t.Errorf("the converted volume is not a subvolume")
	}
	var a, b syscall.Stat_t
	syscall.Stat(filepath.Join(mp, "f"), &a)
	syscall.Stat(filepath.Join(mp, "g"), &b)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "from the directory days" || a.Ino != b.Ino || a.Mode&0o777 != 0o640 {
		t.Errorf("converted data: %q, hard link kept %v, mode %o", got, a.Ino == b.Ino, a.Mode&0o777)
	}
	if st := e.status("old"); st["filesystem"] != "btrfs" || st["snapshot_consistency"] != "point-in-time" {
		t.Errorf("status after Convert: %v", st)
	}
	os.WriteFile(filepath.Join(mp, "h"), []byte("new"), 0o644)
	e.ok("VolumeDriver.Unmount", mountID("old", "m3"))
	e.released("old")
	head := e.status("old")["head_snapshot"]
	if _, id, ok, err := e.d.Base(ctx, "old"); err != nil || !ok || id != head {
		t.Errorf("base after the final snapshot: %q %v %v, want the head %v", id, ok, err, head)
	}

	e.ok("VolumeDriver.Create", map[string]any{"Name": "small", "Opts": map[string]string{"size": "64M"}})
	mp = e.ok("VolumeDriver.Mount", mountID("small", "m4"))["Mountpoint"].(string)
	if !subvolumeRoot(t, mp) {
		t.Errorf("a new volume is not a subvolume")
	}
	f, err := os.Create(filepath.Join(mp, "big"))
	if err != nil {
		t.Fatal(err)
	}
	block := randomBytes(t, 1<<20)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = f.Write(block)
		if werr == nil && i%8 == 7 {
			werr = f.Sync()
		}
	}
	if werr == nil {
		werr = f.Sync()
	}
	f.Close()
	t.Logf("writing 100 MiB into a volume of 64M: %v; status %v", werr, e.status("small")["used_bytes"])
	if !errors.Is(werr, unix.EDQUOT) {
		t.Errorf("writing 100 MiB into a volume of 64M: %v, want EDQUOT", werr)
	}
	st := e.status("small")
	if st["size_limit_bytes"] != float64(64<<20) || st["used_bytes"].(float64) < 32<<20 {
		t.Errorf("status of the full volume: size_limit_bytes %v, used_bytes %v", st["size_limit_bytes"], st["used_bytes"])
	}
	e.ok("VolumeDriver.Unmount", mountID("small", "m4"))
	e.released("small")
}
