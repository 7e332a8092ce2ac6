package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// An in-place restore onto the copy of the previous snapshot writes only
// the blocks that changed, and the result is exactly the new snapshot:
// changed pages, grown and shrunk files, new, removed and retyped
// entries, metadata and xattrs, data that became holes.
func TestRestoreInPlace(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	halfEmptyPages(t, filepath.Join(src, "pages"), 8<<20)
	writeFile(t, filepath.Join(src, "shrinks"), randBytes(300<<10), 0o600)
	writeFile(t, filepath.Join(src, "grows"), randBytes(100<<10+7), 0o600)
	writeFile(t, filepath.Join(src, "becomes-dir"), []byte("file"), 0o600)
	writeFile(t, filepath.Join(src, "gone", "deep", "file"), []byte("bye"), 0o600)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}

	changed := scatterPages(t, filepath.Join(src, "pages"), 16, 9)
	f, _ := os.OpenFile(filepath.Join(src, "pages"), os.O_WRONLY, 0)
	f.WriteAt(make([]byte, 64<<10), 1<<20) // data becomes a hole
	f.Close()
	os.Truncate(filepath.Join(src, "shrinks"), 50<<10+1)
	g, _ := os.OpenFile(filepath.Join(src, "grows"), os.O_WRONLY|os.O_APPEND, 0)
	g.Write(randBytes(40 << 10))
	g.Close()
	os.Remove(filepath.Join(src, "becomes-dir"))
	writeFile(t, filepath.Join(src, "becomes-dir", "inner"), []byte("now a dir"), 0o640)
	os.RemoveAll(filepath.Join(src, "gone"))
	writeFile(t, filepath.Join(src, "new", "file"), dbLike(70<<10, 4), 0o644)
	os.Chmod(filepath.Join(src, "small.txt"), 0o604)
	if xattrsSupported(src) {
		unix.Removexattr(filepath.Join(src, "small.txt"), "user.mime")
		unix.Setxattr(filepath.Join(src, "big.bin"), "user.new", []byte("x"), 0)
	}
	setOldTimes(t, src)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
	if err != nil {
		t.Fatal(err)
	}
	fs.resetCounts()
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{Previous: m1.ID, InPlace: true}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))
	// Fetched: the changed pages' chunks, the new files, the grown tail,
	// the list parts and manifests: not the 20 MiB around them.
	if n := fs.getBytes.Load(); n > int64(len(changed))*16<<10+2<<20 {
		t.Errorf("in-place restore fetched %d bytes", n)
	}
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{InPlace: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("in place without Previous: %v", err)
	}
}

// An in-place restore of a small change reads, of both snapshots' list
// parts, only those of the spans that differ: what it fetches follows the
// change, not the size of the volume.
func TestRestoreInPlaceFetchesChangedParts(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	// Packs of a few list parts each, so that a part not needed is not
	// read through on the way to one that is (ranged reads span gaps of
	// up to 256 KiB: a volume has that between parts of its changes).
	r.packSize = 8 << 10
	base := t.TempDir()
	src := filepath.Join(base, "src")
	halfEmptyPages(t, filepath.Join(src, "a"), 24<<20)
	halfEmptyPages(t, filepath.Join(src, "b"), 8<<20)
	writeFile(t, filepath.Join(src, "c"), randBytes(3<<20), 0o600)
	setOldTimes(t, src)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(src, "a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(randBytes(8192), 5<<20+8192) // one page in one span of a
	f.Close()
	os.Truncate(filepath.Join(src, "c"), 2<<20+100) // c loses its last span and shrinks in another
	writeFile(t, filepath.Join(src, "d"), randBytes(100<<10), 0o600)
	setOldTimes(t, src)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
	if err != nil {
		t.Fatal(err)
	}
	var parts int64
	for _, m := range []*Manifest{m1, m2} {
		for _, p := range m.parts {
			parts += int64(p.Length)
		}
	}
	fs.resetCounts()
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{Previous: m1.ID, InPlace: true}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))
	// Fetched: two manifests, a few parts of each (and their neighbours
	// in their packs), a chunk of a, the last chunk of c and d: ~150 KiB,
	// where the list parts of both snapshots alone are ~185 KiB.
	if n := fs.getBytes.Load(); n > parts/4+128<<10 {
		t.Errorf("in-place restore fetched %d bytes; the list parts of both snapshots are %d", n, parts)
	}
}
