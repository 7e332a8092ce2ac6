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

// fill writes up to n bytes of zeros-that-compress-not (random blocks
// reused) into path and returns the bytes written and the write error.
func fill(path string, n int64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	var done int64
	for done < n {
		w, err := f.Write(b)
		done += int64(w)
		if err != nil {
			return done, err
		}
	}
	return done, f.Sync()
}

// A volume limited to 64M: writing 100 MiB fails with EDQUOT ("Disk
// quota exceeded", what a process in a container sees) near the limit;
// a volume beside it writes its 100 MiB; the limit follows the copy
// through a restore.
func TestSizeLimit(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	lim := int64(64 << 20)
	if err := c.Create(ctx, "lim", localcopy.CreateOptions{SizeLimit: lim}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, "lim")
	if err := c.Create(ctx, "free", localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, "free")

	n, err := fill(filepath.Join(c.Path("lim"), "f"), 100<<20)
	if !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("writing 100 MiB into a 64M volume: wrote %d bytes, error %v; want EDQUOT", n, err)
	}
	if n > lim || n < lim/2 {
		t.Errorf("the limit cut the write at %d bytes, want close below %d", n, lim)
	}
	if n, err := fill(filepath.Join(c.Path("free"), "f"), 100<<20); err != nil {
		t.Fatalf("the unlimited volume beside it failed after %d bytes: %v", n, err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := c.Usage(ctx, "lim")
	if err != nil {
		t.Fatal(err)
	}
	if u.Limit != lim || u.Used < lim/2 || u.Used > lim+(1<<20) {
		t.Errorf("Usage of the full volume = %+v, want used near %d, limit %d", u, lim, lim)
	}
	if u, err := c.Usage(ctx, "free"); err != nil || u.Limit != 0 || u.Used < 100<<20 {
		t.Errorf("Usage of the unlimited volume = %+v, %v", u, err)
	}

	// Restore into a writable clone: the limit carries over.
	tg, err := c.RestoreTarget(ctx, "lim", true, localcopy.CreateOptions{SizeLimit: lim})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tg.Path, "f")); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitRestore(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := fill(filepath.Join(c.Path("lim"), "g"), 100<<20); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("after a restore the volume took %d bytes without its limit (%v)", n, err)
	}
}
