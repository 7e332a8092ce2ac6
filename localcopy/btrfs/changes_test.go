package btrfs

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

func writeAt(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func freeze(t *testing.T, c *Copies, name string) localcopy.Frozen {
	t.Helper()
	f, err := c.Freeze(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func changes(t *testing.T, c *Copies, base, cur localcopy.Frozen) map[string]localcopy.FileChange {
	t.Helper()
	cs, err := c.Changes(context.Background(), base, cur)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]localcopy.FileChange{}
	for _, ch := range cs {
		out[ch.Path] = ch
	}
	return out
}

// The figure of `btrfs subvolume find-new`, by ioctl: 24 KiB written at
// offset 8,192,000 of a 64 MiB file is exactly one changed range.
func TestChangesExactRange(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	const name = "chg"
	if err := c.Create(ctx, name, localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, name)
	p := c.Path(name)
	if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(p, "sub", "big")
	writeAt(t, big, 0, 64<<20)
	writeAt(t, filepath.Join(p, "untouched"), 0, 1<<20)
	writeAt(t, filepath.Join(p, "gone"), 0, 4096)
	writeAt(t, filepath.Join(p, "punched"), 0, 4<<20)
	base := freeze(t, c, name)
	defer c.Release(ctx, base)

	writeAt(t, big, 8192000, 24<<10)
	writeAt(t, filepath.Join(p, "new"), 0, 100) // inline extent
	if err := os.Remove(filepath.Join(p, "gone")); err != nil {
		t.Fatal(err)
	}
	pf, err := os.OpenFile(filepath.Join(p, "punched"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(pf.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	cur := freeze(t, c, name)
	defer c.Release(ctx, cur)

	got := changes(t, c, base, cur)
	want := map[string]localcopy.FileChange{
		"sub/big": {Path: "sub/big", Size: 64 << 20, Ranges: []localcopy.Range{{Off: 8192000, Len: 24 << 10}}},
		"new":     {Path: "new", Size: 100, Ranges: []localcopy.Range{{Off: 0, Len: 100}}},
		"punched": {Path: "punched", Size: 4 << 20, Holes: []localcopy.Range{{Off: 1 << 20, Len: 1 << 20}}},
	}
	for k, w := range want {
		g, ok := got[k]
		g.Inode = 0
		if !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("change of %s = %+v, want %+v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected change listed: %+v", got[k])
		}
	}

	// Nothing written between two instants: nothing listed.
	again := freeze(t, c, name)
	defer c.Release(ctx, again)
	if got := changes(t, c, cur, again); len(got) != 0 {
		t.Errorf("changes between instants with no writes: %+v", got)
	}
	// Backwards or across volumes is refused.
	if _, err := c.Changes(ctx, cur, base); err == nil {
		t.Errorf("Changes from a newer to an older instant was accepted")
	}
}

// nodatacow files are overwritten in place, yet the first write after an
// instant of a shared block copies it, so the change is found as long as
// the base is kept; and relative to the new base only the newer write is.
func TestChangesNoCOW(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	const name = "chg-nocow"
	if err := c.Create(ctx, name, localcopy.CreateOptions{NoCOW: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, name)
	f := filepath.Join(c.Path(name), "table")
	writeAt(t, f, 0, 16<<20)
	if ok, err := hasNoCOW(c.Path(name)); err != nil || !ok {
		t.Fatalf("the copy's root lacks nodatacow: %v, %v", ok, err)
	}
	fd, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	flags, err := unix.IoctlGetUint32(int(fd.Fd()), unix.FS_IOC_GETFLAGS)
	fd.Close()
	if err != nil || flags&fsNOCOWFL == 0 {
		t.Fatalf("a file created in the copy is not nodatacow: %#x, %v", flags, err)
	}
	base := freeze(t, c, name)
	if err := c.KeepBase(ctx, base); err != nil {
		t.Fatal(err)
	}
	base, _, _ = c.Base(ctx, name)
	writeAt(t, f, 1<<20, 8192)
	writeAt(t, f, 1<<20, 8192) // again, in place now
	cur := freeze(t, c, name)
	got := changes(t, c, base, cur)
	if g := got["table"]; !reflect.DeepEqual(g.Ranges, []localcopy.Range{{Off: 1 << 20, Len: 8192}}) {
		t.Fatalf("nodatacow change = %+v, want 8 KiB at 1 MiB", g)
	}
	if err := c.KeepBase(ctx, cur); err != nil {
		t.Fatal(err)
	}
	cur, _, _ = c.Base(ctx, name)
	writeAt(t, f, 5<<20, 8192)
	next := freeze(t, c, name)
	defer c.Release(ctx, next)
	got = changes(t, c, cur, next)
	if g := got["table"]; !reflect.DeepEqual(g.Ranges, []localcopy.Range{{Off: 5 << 20, Len: 8192}}) {
		t.Fatalf("nodatacow change after the new base = %+v, want only 8 KiB at 5 MiB", g)
	}
}
