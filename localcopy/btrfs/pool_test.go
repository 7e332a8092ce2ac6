package btrfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

func openPoolT(t *testing.T, dir string, size int64) *Copies {
	t.Helper()
	c, err := Open(context.Background(), Options{StateDir: dir, PoolSize: size, ForcePool: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A pool survives restarts: the next Open finds it mounted, or attached,
// or attaches and mounts it again, with the volumes in it; it grows when
// asked and refuses to shrink.
func TestPoolLifecycle(t *testing.T) {
	requireBtrfs(t)
	ctx := context.Background()
	dir := newStateDir(t)
	defer os.RemoveAll(dir)
	c := openPoolT(t, dir, 512<<20)
	p := c.Pool()
	defer p.Unmount()
	if !p.Created || !p.Attached || !p.Mounted || p.Size != 512<<20 {
		t.Fatalf("first Open: %+v", p)
	}
	if _, err := os.Stat(filepath.Join(dir, ImageName+".new")); !os.IsNotExist(err) {
		t.Fatalf("temporary image left: %v", err)
	}
	if err := c.Create(ctx, "v", localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	writeAt(t, filepath.Join(c.Path("v"), "f"), 0, 4096)

	// A restart of a host-run portvol: the mount is still there.
	c2 := openPoolT(t, dir, 0)
	if p2 := c2.Pool(); p2.Created || p2.Attached || p2.Mounted || p2.Device != p.Device {
		t.Fatalf("second Open did not reuse the mount: %+v (first %+v)", p2, p)
	}
	// The managed plugin restarted: its mount namespace went, the device
	// detached itself (autoclear).
	if err := p.Unmount(); err != nil {
		t.Fatal(err)
	}
	if l, err := findLoop(p.Image); err != nil || l != nil {
		if l != nil {
			l.Close()
		}
		t.Fatalf("loop device still attached after the unmount (autoclear): %v", err)
	}
	c3 := openPoolT(t, dir, 768<<20)
	p3 := c3.Pool()
	if p3.Created || !p3.Attached || !p3.Mounted || p3.Size != 768<<20 {
		t.Fatalf("third Open: %+v", p3)
	}
	if ok, err := c3.Exists(ctx, "v"); err != nil || !ok {
		t.Fatalf("volume lost across a remount: %v, %v", ok, err)
	}
	size, _, err := p3.Space()
	if err != nil || size < 700<<20 {
		t.Fatalf("pool filesystem after growing to 768M: size %d, %v", size, err)
	}
	if _, err := Open(ctx, Options{StateDir: dir, PoolSize: 256 << 20, ForcePool: true}); !errors.Is(err, localcopy.ErrInvalid) {
		t.Fatalf("shrinking the pool = %v, want ErrInvalid", err)
	}
	if err := p3.Unmount(); err != nil {
		t.Fatal(err)
	}
}

// Missing mkfs, a pool too small: clear errors, no image left behind.
func TestPoolErrors(t *testing.T) {
	requireBtrfs(t)
	ctx := context.Background()
	dir := newStateDir(t)
	defer os.RemoveAll(dir)
	_, err := Open(ctx, Options{StateDir: dir, PoolSize: 512 << 20, ForcePool: true, Mkfs: "/nonexistent/mkfs.btrfs"})
	if !errors.Is(err, localcopy.ErrUnavailable) {
		t.Fatalf("Open without mkfs = %v, want ErrUnavailable", err)
	}
	_, err = Open(ctx, Options{StateDir: dir, PoolSize: 16 << 20, ForcePool: true})
	if !errors.Is(err, localcopy.ErrNoSpace) {
		t.Fatalf("Open of a 16M pool = %v, want ErrNoSpace", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("failed Opens left %v", entries)
	}
}

// A full pool: writers get ENOSPC; Create either makes a whole copy or
// fails with ErrNoSpace leaving none.
func TestPoolFull(t *testing.T) {
	requireBtrfs(t)
	ctx := context.Background()
	dir := newStateDir(t)
	defer os.RemoveAll(dir)
	c := openPoolT(t, dir, 256<<20)
	defer c.Pool().Unmount()
	if err := c.Create(ctx, "big", localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := fill(filepath.Join(c.Path("big"), "f"), 512<<20)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling a 256M pool: wrote %d, error %v; want ENOSPC", n, err)
	}
	for i := 0; i < 50; i++ {
		name := "more" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		err := c.Create(ctx, name, localcopy.CreateOptions{})
		ok, _ := c.Exists(ctx, name)
		switch {
		case err == nil && ok:
			continue
		case errors.Is(err, localcopy.ErrNoSpace) && !ok:
			return
		default:
			t.Fatalf("Create in a full pool: %v (copy exists: %v)", err, ok)
		}
	}
}
