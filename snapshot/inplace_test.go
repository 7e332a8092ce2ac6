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
