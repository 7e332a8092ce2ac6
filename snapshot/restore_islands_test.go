package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A cold restore of a snapshot whose changed blocks sit in another pack
// than their neighbours (islands: single blocks, pairs, the same new
// content at two places of two files, one next to a hole) writes exactly
// the snapshot's bytes, into a new directory and into an empty one.
func TestRestoreIslands(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	bs := r.BlockSize()
	a, b := randBytes(4<<20), randBytes(3<<20)
	m1 := createFiles(t, r, src, map[string][]byte{"a": a, "b": b}, "")
	for off := bs; off+3*bs < len(a); off += 7 * bs {
		copy(a[off+10:], randBytes(100)) // single blocks
		if off%(21*bs) == bs {
			copy(a[off+bs+10:], randBytes(100)) // and pairs
		}
	}
	same := randBytes(bs)
	copy(a[40*bs:], same) // one content at two places: one chunk, two destinations
	copy(b[30*bs:], same)
	clear(b[61*bs : 62*bs]) // a hole next to an island
	copy(b[62*bs+5:], randBytes(50))
	m2 := createFiles(t, r, src, map[string][]byte{"a": a, "b": b}, m1.ID)
	if err := r.loadContent(ctx, m2); err != nil {
		t.Fatal(err)
	}
	rs := &restorer{r: r, m: m2, linked: make([]bool, len(m2.Nodes))}
	var all []uint32
	for c := range m2.Chunks {
		all = append(all, uint32(c))
	}
	if n := len(rs.findIslands(all)); n < 20 {
		t.Fatalf("%d islands found; the test needs them", n)
	}
	check := func(dir string) {
		t.Helper()
		checkFiles(t, dir, bs, map[string][]byte{"a": a, "b": b})
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	check(dst)
	into := filepath.Join(base, "into")
	os.Mkdir(into, 0o700)
	if err := r.Restore(ctx, "v", m2.ID, into, RestoreOptions{Into: true}); err != nil {
		t.Fatal(err)
	}
	check(into)
}
