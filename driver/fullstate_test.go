package driver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A full state directory does not keep the final snapshot from being
// published (the stat cache, which it cannot write, is an optimisation):
// the volume is released and another host reads everything written.
func TestFullStateDirStillReleases(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	a := newHost(t, "hostA", store)
	if err := os.MkdirAll(a.stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", a.stateDir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a 4 MiB tmpfs as the state directory: %v", err)
	}
	t.Cleanup(func() {
		a.stop()
		_ = unix.Unmount(filepath.Join(a.root, "v"), unix.MNT_DETACH)
		_ = unix.Unmount(a.stateDir, unix.MNT_DETACH)
	})
	a.start(nil)
	b := newHost(t, "hostB", store)
	b.start(nil)

	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a1"))["Mountpoint"].(string)
	// The container fills the volume, and with it the state directory.
	var written bytes.Buffer
	f, err := os.Create(filepath.Join(mp, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomBytes(t, 64<<10)
	for {
		n, err := f.Write(chunk)
		written.Write(chunk[:n])
		if errors.Is(err, unix.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, unix.ENOSPC) {
		t.Fatal(err)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a1"))
	a.released("v")

	mp = b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	got, err := os.ReadFile(filepath.Join(mp, "big"))
	if err != nil || !bytes.Equal(got, written.Bytes()) {
		t.Errorf("B reads %d bytes (%v), A wrote %d", len(got), err, written.Len())
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}
