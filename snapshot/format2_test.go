package snapshot

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// halfEmptyPages writes n bytes of 8 KiB pages, each 4 KiB random and
// 4 KiB zero, like database pages with free space.
func halfEmptyPages(t testing.TB, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	for p := 0; p < n; p += 8192 {
		rand.Read(b[p : p+4096])
	}
	writeFile(t, path, b, 0o600)
}

// scatterPages overwrites k random 8 KiB pages of the file at path with
// new half-empty pages and returns the byte ranges written.
func scatterPages(t testing.TB, path string, k int, seed uint64) []Range {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	r := mrand.New(mrand.NewPCG(seed, 1))
	seen := map[int64]bool{}
	var out []Range
	page := make([]byte, 8192)
	for len(out) < k {
		p := r.Int64N(fi.Size() / 8192)
		if seen[p] {
			continue
		}
		seen[p] = true
		rand.Read(page[:4096])
		if _, err := f.WriteAt(page, p*8192); err != nil {
			t.Fatal(err)
		}
		out = append(out, Range{Off: uint64(p * 8192), Len: 8192})
	}
	return out
}

// knownChanges is a ChangeSource that knows what the test changed, as
// btrfs's extent generations will: files not listed are unchanged.
type knownChanges struct {
	ranges map[string][]Range // nil slice: the whole file
	asked  map[string]bool
}

func (k *knownChanges) FileChanges(path string, ino, size uint64) (FileChanges, error) {
	if k.asked == nil {
		k.asked = map[string]bool{}
	}
	k.asked[path] = true
	r, ok := k.ranges[path]
	if !ok {
		return FileChanges{Unchanged: true}, nil
	}
	return FileChanges{Ranges: r}, nil
}

// Scattered 8 KiB page writes cost about what they wrote, not the 1 MiB
// around each: uploads stay within 2× the bytes changed, whether the
// changed files are read whole (stat-based discovery) or only where a
// ChangeSource says (then reads stay within 4× too), and the result
// restores exactly.
func TestPageChangesCostWhatChanged(t *testing.T) {
	for _, withSource := range []bool{false, true} {
		name := "stat"
		if withSource {
			name = "change-source"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, fs := newTestRepo(t, testKey)
			base := t.TempDir()
			src := filepath.Join(base, "src")
			halfEmptyPages(t, filepath.Join(src, "a"), 16<<20)
			halfEmptyPages(t, filepath.Join(src, "b"), 16<<20)
			halfEmptyPages(t, filepath.Join(src, "c"), 4<<20)
			time.Sleep(20 * time.Millisecond)
			m1, err := r.Create(ctx, "v", src, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			changes := &knownChanges{ranges: map[string][]Range{
				"a": scatterPages(t, filepath.Join(src, "a"), 48, 1),
				"b": scatterPages(t, filepath.Join(src, "b"), 48, 2),
			}}
			changed := uint64(96 * 8192)
			time.Sleep(20 * time.Millisecond)
			opts := CreateOptions{Parent: m1.ID}
			if withSource {
				opts.Changes = changes
			}
			fs.resetCounts()
			m2, err := r.Create(ctx, "v", src, opts)
			if err != nil {
				t.Fatal(err)
			}
			up := uint64(fs.putBytes.Load())
			t.Logf("changed %d KiB: uploaded %d KiB (%.2f×), read %d KiB", changed>>10, up>>10, float64(up)/float64(changed), m2.Stats.BytesRead>>10)
			if up > 2*changed {
				t.Errorf("uploaded %d bytes for %d changed: more than 2×", up, changed)
			}
			if withSource {
				if m2.Stats.BytesRead > 4*changed {
					t.Errorf("read %d bytes for %d changed: more than 4×", m2.Stats.BytesRead, changed)
				}
				if m2.Stats.FilesRead != 2 || !changes.asked["c"] {
					t.Errorf("read %d files; the unchanged one should not be opened", m2.Stats.FilesRead)
				}
			}
			if m2.Unchanged {
				t.Error("a changed tree reported as unchanged")
			}
			dst := filepath.Join(base, "dst")
			if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, scanTree(t, src), scanTree(t, dst))
			if err := r.Verify(ctx, "v", m2.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A ChangeSource is believed: a file it calls unchanged is not opened,
// even when its timestamps say otherwise; only the ranges it names are
// read; a file that grew or shrank gets its new tail right.
func TestChangeSourceIsBelieved(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, nil)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	old := randBytes(200 << 10)
	writeFile(t, filepath.Join(src, "lied-about"), old, 0o600)
	writeFile(t, filepath.Join(src, "ranged"), randBytes(300<<10), 0o600)
	writeFile(t, filepath.Join(src, "grows"), randBytes(100<<10+5), 0o600)
	writeFile(t, filepath.Join(src, "shrinks"), randBytes(100<<10+5), 0o600)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Changed on disk, but the source says unchanged: the old content
	// stays in the snapshot, proving the file was not read.
	writeFile(t, filepath.Join(src, "lied-about"), randBytes(200<<10), 0o600)
	// Two ranges changed; a third change the source does not report is
	// not picked up either.
	f, _ := os.OpenFile(filepath.Join(src, "ranged"), os.O_WRONLY, 0)
	f.WriteAt([]byte("first change"), 1000)
	f.WriteAt([]byte("second change"), 250<<10)
	f.WriteAt([]byte("unreported"), 100<<10)
	f.Close()
	g, _ := os.OpenFile(filepath.Join(src, "grows"), os.O_WRONLY|os.O_APPEND, 0)
	g.Write(randBytes(70 << 10))
	g.Close()
	os.Truncate(filepath.Join(src, "shrinks"), 40<<10+3)
	src2 := scanTree(t, src)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, Changes: &knownChanges{ranges: map[string][]Range{
		"ranged":  {{Off: 1000, Len: 12}, {Off: 250 << 10, Len: 13}},
		"grows":   {{Off: 100<<10 + 5, Len: 70 << 10}},
		"shrinks": {},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Stats.FilesRead != 3 || m2.Stats.BytesRead > 200<<10 {
		t.Errorf("read %d files, %d bytes", m2.Stats.FilesRead, m2.Stats.BytesRead)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	got := scanTree(t, dst)
	for _, p := range []string{"grows", "shrinks"} {
		if got[p].Data != src2[p].Data {
			t.Errorf("%s: restored content differs from the source", p)
		}
	}
	data, _ := os.ReadFile(filepath.Join(dst, "lied-about"))
	if string(data) != string(old) {
		t.Error("a file the source called unchanged was read again")
	}
	data, _ = os.ReadFile(filepath.Join(dst, "ranged"))
	if string(data[1000:1012]) != "first change" || string(data[250<<10:250<<10+13]) != "second change" {
		t.Error("reported changes missing")
	}
	if string(data[100<<10:100<<10+10]) == "unreported" {
		t.Error("an unreported range was read: the source was not believed")
	}
}

// An interval without change is reported, and with SkipUnchanged costs
// no upload and no new snapshot. Any change, metadata included, counts.
func TestUnchangedSnapshot(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, nil)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	cache := filepath.Join(base, "statcache")
	time.Sleep(20 * time.Millisecond)
	m1, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if m1.Unchanged {
		t.Error("a first snapshot reported as unchanged")
	}
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if !m2.Unchanged || m2.ID == m1.ID {
		t.Errorf("same tree: Unchanged %v, id %s (parent %s)", m2.Unchanged, m2.ID, m1.ID)
	}
	fs.resetCounts()
	m3, err := r.Create(ctx, "v", src, CreateOptions{Parent: m2.ID, StatCache: cache, SkipUnchanged: true})
	if err != nil {
		t.Fatal(err)
	}
	if !m3.Unchanged || m3.ID != m2.ID || fs.puts.Load() != 0 {
		t.Errorf("SkipUnchanged: Unchanged %v, id %s, %d uploads", m3.Unchanged, m3.ID, fs.puts.Load())
	}
	if infos, _ := r.List(ctx, "v"); len(infos) != 2 {
		t.Errorf("%d snapshots, want 2", len(infos))
	}
	// The stat cache still vouches for the files: nothing is read.
	m4, err := r.Create(ctx, "v", src, CreateOptions{Parent: m2.ID, StatCache: cache, SkipUnchanged: true})
	if err != nil || !m4.Unchanged || m4.Stats.FilesRead != 0 {
		t.Errorf("after a skipped snapshot: %v, read %d", err, m4.Stats.FilesRead)
	}
	os.Chmod(filepath.Join(src, "small.txt"), 0o600)
	m5, err := r.Create(ctx, "v", src, CreateOptions{Parent: m2.ID, StatCache: cache, SkipUnchanged: true})
	if err != nil {
		t.Fatal(err)
	}
	if m5.Unchanged || m5.ID == m2.ID {
		t.Error("a mode change went unnoticed")
	}
}

// A format 1 store gets format 2 snapshots on top of its format 1 ones;
// both kinds restore.
func TestV1StoreGetsV2Snapshots(t *testing.T) {
	ctx := context.Background()
	s := loadGoldenStore(t, filepath.Join("testdata", "store-v1-plain"))
	r, err := Open(ctx, s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.BlockSize() != defaultBlockSize {
		t.Errorf("new snapshots in a format 1 store use %d-byte blocks", r.BlockSize())
	}
	infos, err := r.List(ctx, "pg")
	if err != nil {
		t.Fatal(err)
	}
	head := infos[len(infos)-1]
	base := t.TempDir()
	dir := filepath.Join(base, "data")
	if err := r.Restore(ctx, "pg", head.ID, dir, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "db", "new"), dbLike(100<<10, 5), 0o600)
	m, err := r.Create(ctx, "pg", dir, CreateOptions{Parent: head.ID})
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 2 || m.BlockSize != defaultBlockSize {
		t.Errorf("new snapshot: version %d, block size %d", m.Version, m.BlockSize)
	}
	out := filepath.Join(base, "out")
	if err := r.Restore(ctx, "pg", m.ID, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, dir), scanTree(t, out))
	// Restoring the format 1 snapshot onto the format 2 copy works too.
	if err := r.Restore(ctx, "pg", head.ID, out, RestoreOptions{Previous: m.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "db", "new")); !os.IsNotExist(err) {
		t.Errorf("format 1 snapshot restored over format 2 copy: %v", err)
	}
}
