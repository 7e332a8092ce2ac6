package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// With a ChangeSource, Create keeps the parent's list parts of the spans
// that did not change by reference: it fetches and re-encodes only those
// of the changed spans, and the snapshot is the one a Create that loads
// the whole parent makes — the same list parts, the same statistics, the
// same tree on restore.
func TestChangeSourceKeepsParentParts(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	r.packSize = 8 << 10 // packs of a few list parts: no read through the parts not needed
	base := t.TempDir()
	src := filepath.Join(base, "src")
	halfEmptyPages(t, filepath.Join(src, "a"), 24<<20)
	halfEmptyPages(t, filepath.Join(src, "b"), 8<<20)
	writeFile(t, filepath.Join(src, "c"), randBytes(3<<20+100), 0o600)
	writeFile(t, filepath.Join(src, "gone"), randBytes(2<<20), 0o600)
	if err := os.Link(filepath.Join(src, "b"), filepath.Join(src, "h")); err != nil {
		t.Fatal(err)
	}
	setOldTimes(t, src)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	f, err := os.OpenFile(filepath.Join(src, "a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(randBytes(8192), 5<<20+8192) // one page in one span
	f.WriteAt(make([]byte, 1<<20), 9<<20)  // a whole span becomes a hole
	f.Close()
	os.Truncate(filepath.Join(src, "c"), 2<<20+100) // loses a span, shrinks in another
	old, _ := os.ReadFile(filepath.Join(src, "b"))
	os.Remove(filepath.Join(src, "h"))
	writeFile(t, filepath.Join(src, "h"), old, 0o600) // the hardlink becomes a copy
	g, _ := os.OpenFile(filepath.Join(src, "b"), os.O_WRONLY|os.O_APPEND, 0)
	g.Write(randBytes(1<<20 + 5)) // grows by a span and a bit
	g.Close()
	os.Remove(filepath.Join(src, "gone"))
	writeFile(t, filepath.Join(src, "d"), randBytes(100<<10), 0o600)
	setOldTimes(t, src)
	changes := func() ChangeSource {
		return &knownChanges{ranges: map[string][]Range{
			"a": {{Off: 5<<20 + 8192, Len: 8192}, {Off: 9 << 20, Len: 1 << 20}},
			"b": {{Off: 8 << 20, Len: 1<<20 + 5}},
			"c": {},
		}}
	}

	fs.resetCounts()
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, Changes: changes()})
	if err != nil {
		t.Fatal(err)
	}
	got, put := fs.getBytes.Load(), fs.putBytes.Load()
	t.Logf("partial: fetched %d, stored %d", got, put)
	// The same tree from the whole parent: a pending collection (of a
	// pack nothing uses) makes Create load every part.
	r.fossils = func(context.Context) (map[string]bool, error) {
		return map[string]bool{"packs/00/none": true}, nil
	}
	fs.resetCounts()
	full, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, Changes: changes()})
	if err != nil {
		t.Fatal(err)
	}
	r.fossils = nil
	type part struct {
		node int32
		span uint64
		id   ID
	}
	partsOf := func(m *Manifest) []part {
		var out []part
		for _, p := range m.parts {
			out = append(out, part{p.Node, p.Span, p.ID})
		}
		return out
	}
	if !slices.Equal(partsOf(m2), partsOf(full)) {
		t.Errorf("list parts differ from a Create that loads the whole parent:\n%v\n%v", partsOf(m2), partsOf(full))
	}
	if m2.Stats.DataBytes != full.Stats.DataBytes || m2.Stats.BytesRead != full.Stats.BytesRead {
		t.Errorf("statistics differ: %+v and %+v", m2.Stats, full.Stats)
	}
	// The parent has 39 parts (~110 KiB); the changed spans are a's two,
	// b's last two (and h's: the copy of b is read whole), c's last two.
	t.Logf("whole parent: fetched %d", fs.getBytes.Load())
	if whole := fs.getBytes.Load(); got*2 > whole {
		t.Errorf("Create fetched %d bytes of the parent; loading it whole fetches %d", got, whole)
	}
	// Stored: the new chunks (b's new MiB, d, a's page) and the parts
	// of the changed spans, no part of a span that did not change.
	if put > 1<<20+100<<10+64<<10+16<<10+100<<10 {
		t.Errorf("Create stored %d bytes", put)
	}
	if err := r.Verify(ctx, "v", m2.ID); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))

	// Nothing changed since m2: the source says so, and the snapshot is
	// reported unchanged without a part being fetched.
	fs.resetCounts()
	m3, err := r.Create(ctx, "v", src, CreateOptions{Parent: m2.ID, Changes: &knownChanges{}, SkipUnchanged: true})
	if err != nil {
		t.Fatal(err)
	}
	if !m3.Unchanged || fs.putBytes.Load() != 0 {
		t.Errorf("unchanged tree: Unchanged %v, %d bytes stored", m3.Unchanged, fs.putBytes.Load())
	}
}
