package btrfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// makeTree builds a directory with what a volume may hold: nested files,
// a sparse file, a symlink, a hard link, a fifo, an xattr, owners, modes
// and times.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a", "b"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("hello"), 0o640))
	must(os.Chown(filepath.Join(dir, "a", "b", "f"), 101, 104))
	writeAt(t, filepath.Join(dir, "sparse"), 32<<20, 4096)
	must(os.Symlink("a/b/f", filepath.Join(dir, "link")))
	must(os.Link(filepath.Join(dir, "a", "b", "f"), filepath.Join(dir, "hard")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(unix.Lsetxattr(filepath.Join(dir, "a"), "user.portvol", []byte("x"), 0))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "a", "b", "f"), old, old))
}

func checkTree(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "a", "b", "f"))
	if err != nil || string(b) != "hello" {
		t.Fatalf("a/b/f = %q, %v", b, err)
	}
	var st, st2 unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "a", "b", "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 101 || st.Gid != 104 || st.Mode&0o7777 != 0o640 || st.Mtim.Sec != time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).Unix() {
		t.Errorf("a/b/f metadata: uid %d gid %d mode %o mtime %d", st.Uid, st.Gid, st.Mode&0o7777, st.Mtim.Sec)
	}
	if err := unix.Lstat(filepath.Join(dir, "hard"), &st2); err != nil || st2.Ino != st.Ino {
		t.Errorf("hard link not kept: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "link")); err != nil || l != "a/b/f" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	if err := unix.Lstat(filepath.Join(dir, "fifo"), &st2); err != nil || st2.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo not kept: %v", err)
	}
	if err := unix.Lstat(filepath.Join(dir, "sparse"), &st2); err != nil || st2.Size != 32<<20+4096 || st2.Blocks*512 > 1<<20 {
		t.Errorf("sparse file: size %d, allocated %d (holes must stay holes)", st2.Size, st2.Blocks*512)
	}
	if err := unix.Lstat(filepath.Join(dir, "a"), &st2); err != nil || st2.Mode&0o777 != 0o750 {
		t.Errorf("directory mode %o", st2.Mode&0o777)
	}
	v := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "a"), "user.portvol", v); err != nil || string(v[:n]) != "x" {
		t.Errorf("xattr not kept: %q, %v", v[:n], err)
	}
}

// A directory volume of an older portvol, on another filesystem (the
// state directory's ext4): copied into a subvolume, then removed.
func TestConvertFromOtherFilesystem(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	old := filepath.Join(newStateDir(t), "data")
	defer os.RemoveAll(filepath.Dir(old))
	makeTree(t, old)
	if err := c.Convert(ctx, "conv", old); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, "conv")
	if ok, err := isSubvolume(c.Path("conv")); err != nil || !ok {
		t.Fatalf("converted copy is not a subvolume: %v, %v", ok, err)
	}
	checkTree(t, c.Path("conv"))
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the old directory is still there: %v", err)
	}
	if err := c.Convert(ctx, "conv", old); err == nil {
		t.Errorf("converting a subvolume again was accepted")
	}
	f := freeze(t, c, "conv")
	checkTree(t, f.Path)
	if err := c.Release(ctx, f); err != nil {
		t.Fatal(err)
	}
}

// On a btrfs state directory directory volumes and subvolumes share the
// path: the conversion swaps in place.
func TestConvertInPlace(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	live := c.Path("conv-here")
	makeTree(t, live)
	if err := c.Convert(ctx, "conv-here", live); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, "conv-here")
	if ok, err := isSubvolume(live); err != nil || !ok {
		t.Fatalf("not a subvolume after Convert: %v, %v", ok, err)
	}
	checkTree(t, live)
	if left := c.entries(c.volDir("conv-here"), createPrefix); len(left) > 0 {
		t.Errorf("leftovers: %v", left)
	}
	if _, err := c.Freeze(ctx, "conv-here"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "conv-here"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(c.volDir("conv-here")); !os.IsNotExist(err) {
		t.Errorf("volume directory left after Remove: %v", err)
	}
}
