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

// NewChangeSource over two read-only snapshots kept outside the pool's
// layout finds an 8 KiB page write as that page; the base keeps its
// identity (UUID, generations) through the renames import --base makes;
// pairs the answers would not hold for are refused.
func TestNewChangeSourceOutsideThePool(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	const name = "ext-cs"
	if err := c.Create(ctx, name, localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Remove(ctx, name) })
	live := c.Path(name)
	side := filepath.Join(c.Root(), "ext-cs-side")
	if err := os.MkdirAll(side, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []string{"base", "cur", "tmp", "rw"} {
			_ = DeleteSubvolume(filepath.Join(side, n))
		}
		os.RemoveAll(side)
	})
	file := filepath.Join(live, "f")
	writeAt(t, file, 0, 16<<20)
	base, cur := filepath.Join(side, "tmp"), filepath.Join(side, "cur")
	if err := Snapshot(live, base, true); err != nil {
		t.Fatal(err)
	}
	before, err := Inspect(base)
	if err != nil {
		t.Fatal(err)
	}
	src, err := Inspect(live)
	if err != nil {
		t.Fatal(err)
	}
	if !before.ReadOnly || before.ParentUUID != src.UUID || src.ReadOnly || before.FSID != src.FSID || before.UUID == src.UUID {
		t.Fatalf("snapshot %+v of subvolume %+v", before, src)
	}
	// Kept under another name, as import --base does.
	if err := localcopy.SwapIn(base, filepath.Join(side, "base")); err != nil {
		t.Fatal(err)
	}
	base = filepath.Join(side, "base")
	writeAt(t, file, 5<<20, 8192)
	if err := Snapshot(live, cur, true); err != nil {
		t.Fatal(err)
	}
	after, err := Inspect(base)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the base changed identity by being renamed and kept: %+v, then %+v", before, after)
	}
	cs, err := NewChangeSource(ctx, name, base, cur)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(cur, "f"), &st); err != nil {
		t.Fatal(err)
	}
	fc, err := cs.FileChanges("f", st.Ino, uint64(st.Size))
	if err != nil {
		t.Fatal(err)
	}
	if fc.Unchanged || len(fc.Ranges) != 1 || fc.Ranges[0].Off != 5<<20 || fc.Ranges[0].Len != 8192 {
		t.Fatalf("changes of f: %+v, want the one 8 KiB page at 5 MiB", fc)
	}

	// Refused: reversed, a writable one, a snapshot of another subvolume.
	if _, err := NewChangeSource(ctx, name, cur, base); !errors.Is(err, localcopy.ErrInvalid) {
		t.Errorf("reversed pair: %v", err)
	}
	rw := filepath.Join(side, "rw")
	if err := Snapshot(live, rw, false); err != nil {
		t.Fatal(err)
	}
	if _, err := NewChangeSource(ctx, name, base, rw); !errors.Is(err, localcopy.ErrInvalid) {
		t.Errorf("writable cur: %v", err)
	}
	if _, err := NewChangeSource(ctx, name, base, live); !errors.Is(err, localcopy.ErrInvalid) {
		t.Errorf("the live subvolume as cur: %v", err)
	}
	if _, err := Inspect(side); !errors.Is(err, localcopy.ErrInvalid) {
		t.Errorf("Inspect of a plain directory: %v", err)
	}
}
