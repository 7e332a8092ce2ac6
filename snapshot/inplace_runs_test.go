package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// An in-place restore writes single changed blocks through the page cache
// and long runs with O_DIRECT, into the same file, next to each other:
// the file then holds exactly the new snapshot's bytes, also read past
// the page cache.
func TestRestoreInPlaceShortAndLongRuns(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, testKey)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	data := randBytes(8 << 20)
	writeFile(t, filepath.Join(src, "table"), data, 0o600)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(ctx, "v", m1.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	bs := r.BlockSize()
	for off := 0; off < len(data); off += 5 * bs { // single blocks
		copy(data[off+100:], randBytes(200))
	}
	copy(data[3<<20:], randBytes(2<<20)) // a run longer than minDirect
	writeFile(t, filepath.Join(src, "table"), data, 0o600)
	setOldTimes(t, src)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{Previous: m1.ID, InPlace: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "table"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the in-place restore does not hold the new snapshot's bytes")
	}
	fd, err := unix.Open(filepath.Join(dst, "table"), unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Logf("not read past the page cache: no O_DIRECT here: %v", err)
		return
	}
	defer unix.Close(fd)
	buf := alignedBuf(len(data))
	if err := preadFull(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data) {
		t.Fatal("read past the page cache, the in-place restore does not hold the new snapshot's bytes")
	}
}
