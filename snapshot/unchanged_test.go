package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/needs"
)

// Unchanged shows a tree equal to a snapshot by the manifest object
// alone (one GET, no chunk lists, nothing written), and never where
// Create would store something new: any change to names, metadata or
// content, or a file too recent to judge by its timestamps, makes it
// false.
func TestUnchangedCheck(t *testing.T) {
	ctx := context.Background()
	rewriteKeepingMtime := func(t *testing.T, p string) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		data[0] ^= 0xff
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		change func(t *testing.T, src string)
		racy   bool
		same   bool
	}{
		{name: "nothing", same: true},
		{name: "nothing, no stat cache", same: true},
		{name: "content, same size and mtime", change: func(t *testing.T, src string) { rewriteKeepingMtime(t, filepath.Join(src, "big.bin")) }},
		{name: "file mode", change: func(t *testing.T, src string) { os.Chmod(filepath.Join(src, "small.txt"), 0o600) }},
		{name: "directory mode", change: func(t *testing.T, src string) { os.Chmod(filepath.Join(src, "emptydir"), 0o755) }},
		{name: "new file", change: func(t *testing.T, src string) {
			writeFile(t, filepath.Join(src, "emptydir", "new"), []byte("x"), 0o600)
		}},
		{name: "removed file", change: func(t *testing.T, src string) { os.Remove(filepath.Join(src, "zeros")) }},
		{name: "renamed file", change: func(t *testing.T, src string) {
			os.Rename(filepath.Join(src, "zeros"), filepath.Join(src, "zeroes"))
		}},
		{name: "symlink target", change: func(t *testing.T, src string) {
			os.Remove(filepath.Join(src, "link-rel"))
			os.Symlink("empty", filepath.Join(src, "link-rel"))
		}},
		{name: "xattr", change: func(t *testing.T, src string) {
			if !xattrsSupported(src) {
				needs.Missing(t, "no user xattrs here")
			}
			if err := unix.Lsetxattr(filepath.Join(src, "small.txt"), "user.changed", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "racy files", racy: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, fs := newTestRepo(t, nil)
			base := t.TempDir()
			src := filepath.Join(base, "src")
			makeTree(t, src)
			cache := filepath.Join(base, "statcache")
			time.Sleep(20 * time.Millisecond) // past the racy window
			if c.racy {
				r.racyWindow = time.Hour
			}
			m1, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if c.change != nil {
				c.change(t, src)
			}
			if c.name == "nothing, no stat cache" {
				cache = "" // the manifest's own record of the files judges
			}
			fs.resetCounts()
			info, same, err := r.Unchanged(ctx, "v", src, m1.ID, cache)
			if err != nil {
				t.Fatal(err)
			}
			if same != c.same {
				t.Fatalf("Unchanged = %v, want %v", same, c.same)
			}
			if fs.puts.Load() != 0 || fs.gets.Load() != 1 {
				t.Errorf("Unchanged wrote %d objects and read %d (want 0 and the manifest alone)", fs.puts.Load(), fs.gets.Load())
			}
			if same && (info.ID != m1.ID || info.Stats.Files != m1.Stats.Files) {
				t.Errorf("Unchanged returned %+v, want snapshot %s's", info, m1.ID)
			}
			// Create agrees: what Unchanged calls equal is stored as nothing new.
			m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache, SkipUnchanged: true})
			if err != nil {
				t.Fatal(err)
			}
			if same && (!m2.Unchanged || m2.ID != m1.ID) {
				t.Errorf("Unchanged said equal, Create made %s (unchanged %v)", m2.ID, m2.Unchanged)
			}
			if !c.racy && !same && m2.Unchanged {
				t.Errorf("Create finds the %s change unchanged", c.name)
			}
		})
	}
	// A snapshot that does not exist is an error, not "changed".
	r, _ := newTestRepo(t, nil)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	if _, _, err := r.Unchanged(ctx, "v", src, "20261207T000000Z-0123456789abcdef", ""); err == nil {
		t.Error("Unchanged against a missing snapshot: no error")
	}
}
