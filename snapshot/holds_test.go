package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Holds proves that a restored directory still holds its snapshot, and
// refuses once anything in it changed.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	setOldTimes(t, src)
	m, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		change func(dir, cache string)
	}{
		{"unmodified", func(string, string) {}},
		{"file rewritten with the same bytes", func(d, _ string) {
			must(os.WriteFile(filepath.Join(d, "small.txt"), []byte("hello, volume\n"), 0o640))
		}},
		{"file chmod", func(d, _ string) { must(os.Chmod(filepath.Join(d, "big.bin"), 0o644)) }},
		{"file added", func(d, _ string) { must(os.WriteFile(filepath.Join(d, "db", "new"), nil, 0o600)) }},
		{"file removed", func(d, _ string) { must(os.Remove(filepath.Join(d, "empty"))) }},
		{"directory added", func(d, _ string) { must(os.Mkdir(filepath.Join(d, "emptydir", "x"), 0o700)) }},
		{"directory chmod", func(d, _ string) { must(os.Chmod(filepath.Join(d, "emptydir"), 0o755)) }},
		{"symlink retargeted", func(d, _ string) {
			must(os.Remove(filepath.Join(d, "link-rel")))
			must(os.Symlink("big.bin", filepath.Join(d, "link-rel")))
		}},
		{"hardlink broken", func(d, _ string) {
			must(os.Remove(filepath.Join(d, "hard1")))
			must(os.WriteFile(filepath.Join(d, "hard1"), []byte("hello, volume\n"), 0o640))
		}},
		{"no stat cache", func(_, c string) { must(os.Remove(c)) }},
		{"damaged stat cache", func(_, c string) { must(os.WriteFile(c, []byte("PVSC junk"), 0o600)) }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(base, "dst", string(rune('a'+i)))
			cache := filepath.Join(base, "cache-"+string(rune('a'+i)))
			if err := r.Restore(ctx, "v", m.ID, dir, RestoreOptions{StatCache: cache}); err != nil {
				t.Fatal(err)
			}
			c.change(dir, cache)
			id, err := r.Holds(ctx, "v", dir, cache)
			if i == 0 {
				if err != nil || id != m.ID {
					t.Fatalf("Holds of an unmodified restore: %q, %v; want %s", id, err, m.ID)
				}
				return
			}
			if !errors.Is(err, ErrNotProven) {
				t.Fatalf("Holds after %s: %q, %v; want ErrNotProven", c.name, id, err)
			}
		})
	}
}
