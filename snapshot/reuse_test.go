package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Restoring onto a directory that holds an older snapshot of the volume
// fetches only the chunks it lacks, and still ends up exactly right when
// the local copy was modified behind our back.
func TestRestoreOntoPrevious(t *testing.T) {
	for _, withCache := range []bool{true, false} {
		name := "previous-only"
		if withCache {
			name = "statcache"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, fs := newTestRepo(t, testKey)
			base := t.TempDir()
			src := filepath.Join(base, "src")
			makeTree(t, src)
			writeFile(t, filepath.Join(src, "big"), randBytes(16<<20), 0o600)
			writeFile(t, filepath.Join(src, "db", "table"), dbLike(8<<20, 11), 0o600)
			writeFile(t, filepath.Join(src, "gone"), randBytes(1<<20), 0o600)
			m1, err := r.Create(ctx, "v", src, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}

			dst := filepath.Join(base, "state", "data")
			cache := ""
			if withCache {
				cache = filepath.Join(base, "state", "statcache")
			}
			if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{StatCache: cache}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)

			// The volume moves on elsewhere...
			f, _ := os.OpenFile(filepath.Join(src, "big"), os.O_WRONLY, 0)
			f.WriteAt(randBytes(1<<20), 5<<20) // one aligned block
			f.Close()
			writeFile(t, filepath.Join(src, "new"), randBytes(1<<20), 0o644)
			os.Remove(filepath.Join(src, "gone"))
			os.Chmod(filepath.Join(src, "small.txt"), 0o600) // metadata only
			m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
			if err != nil {
				t.Fatal(err)
			}
			// ...while someone scribbles on the local copy.
			f, _ = os.OpenFile(filepath.Join(dst, "db", "table"), os.O_WRONLY, 0)
			f.WriteAt([]byte("garbage"), 3<<20+17)
			f.Close()

			unchanged := "db/base/16384/1249"
			inoBefore := scanTree(t, dst)[unchanged].Inode
			fs.resetCounts()
			if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{Previous: m1.ID, StatCache: cache}); err != nil {
				t.Fatal(err)
			}
			after := scanTree(t, dst)
			compareTrees(t, scanTree(t, src), after)
			// With the stat cache, unchanged files are taken over whole
			// (hardlinked), not copied.
			if withCache && after[unchanged].Inode != inoBefore {
				t.Errorf("unchanged file was copied, not linked")
			}
			// Fetched: the changed block, the new file, the scribbled-over
			// block, and two manifests. Not the other ~25 MiB.
			if n := fs.getBytes.Load(); n > 4<<20 {
				t.Errorf("restore onto the previous copy downloaded %d bytes, want < 4 MiB", n)
			}
		})
	}
}

// A host that restored snapshot S and then snapshots with parent S does
// not read unchanged files again, although the manifest's inodes and
// ctimes are the other host's: the stat cache written by Restore vouches
// for them.
func TestCreateAfterRestoreReadsNothing(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, nil)
	base := t.TempDir()
	src := filepath.Join(base, "host-a")
	makeTree(t, src)
	m1, err := r.Create(ctx, "v", src, CreateOptions{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "host-b", "data")
	cache := filepath.Join(base, "host-b", "statcache")
	if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{StatCache: cache}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	os.WriteFile(filepath.Join(dst, "small.txt"), []byte("changed on host b\n"), 0o640)

	fs.resetCounts()
	m2, err := r.Create(ctx, "v", dst, CreateOptions{Parent: m1.ID, Host: "b", StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Stats.FilesRead != 1 {
		t.Errorf("read %d files; only the one changed on host b should be read", m2.Stats.FilesRead)
	}
	// Without the cache every file must be read: inodes differ.
	m3, err := r.Create(ctx, "v", dst, CreateOptions{Parent: m1.ID, Host: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if m3.Stats.FilesRead != m3.Stats.Files {
		t.Errorf("without the stat cache read %d of %d files", m3.Stats.FilesRead, m3.Stats.Files)
	}
	out := filepath.Join(base, "check")
	if err := r.Restore(ctx, "v", m2.ID, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, dst), scanTree(t, out))
}

// Restoring onto the previous copy after scattered page changes: the
// blocks kept from the local copy are written in long runs that leave
// zeros over the changed blocks for the fetch to overwrite, and the
// result is exactly the new snapshot — also where a kept block was
// scribbled over locally (fetched instead), where a block became a hole,
// where one new content lands at two places and where a kept content
// moved within the file (copied from its old place, never zeroed).
func TestRestoreOntoPreviousScattered(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	bs := r.BlockSize()
	a, b := dbLike(6<<20, 3), dbLike(2<<20, 4)
	m1 := createFiles(t, r, src, map[string][]byte{"a": a, "b": b}, "")
	dst := filepath.Join(base, "state", "data")
	cache := filepath.Join(base, "state", "statcache")
	if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{StatCache: cache}); err != nil {
		t.Fatal(err)
	}
	var changed int
	for off := 3 * bs; off+2*bs < len(a); off += 5 * bs {
		copy(a[off+100:], randBytes(8192)) // one page in a block
		changed++
	}
	same := randBytes(bs)
	copy(a[77*bs:], same) // one new content, two places
	copy(b[9*bs:], same)
	clear(a[120*bs : 121*bs]) // a block that becomes a hole
	for _, k := range []int{201, 231, 262, 301} {
		copy(a[k*bs:(k+1)*bs], a[(k-190)*bs:]) // a kept content that moved
	}
	m2 := createFiles(t, r, src, map[string][]byte{"a": a, "b": b}, m1.ID)
	// A kept block between two changed ones is scribbled over locally.
	f, err := os.OpenFile(filepath.Join(dst, "a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage"), int64(6*bs+5))
	f.Close()

	fs.resetCounts()
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{Previous: m1.ID, StatCache: cache}); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dst, bs, map[string][]byte{"a": a, "b": b})
	// The changed blocks and the scribbled one are fetched, not the rest
	// (8 MiB); each block of dbLike data compresses to about half.
	if n, most := fs.getBytes.Load(), int64(changed+4)*int64(bs)+1<<20; n > most {
		t.Errorf("fetched %d bytes for %d changed blocks, want at most %d", n, changed+2, most)
	}
}
