package main

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/localcopy/btrfs"
)

// baseFixture is SRC_DIR, a btrfs subvolume holding a tree and a 64 MiB
// database-like file, and where its bases go (same filesystem, outside
// it), with an initialised store.
type baseFixture struct {
	src, side, db, sc string
	store             []string
}

func newBaseFixture(t *testing.T) *baseFixture {
	src := exportSubvolume(t)
	f := &baseFixture{src: src, side: filepath.Dir(src), db: filepath.Join(src, "base/1/16384"), sc: filepath.Join(t.TempDir(), "statcache")}
	makeTree(t, src)
	big := make([]byte, 64<<20)
	_, _ = rand.Read(big)
	if err := os.WriteFile(f.db, big, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := localStore(t)
	f.store = []string{"--store", ts.url}
	cli(t, f.args("init")...).ok(t)
	return f
}

func (f *baseFixture) args(a ...string) []string {
	return append(append([]string{}, a...), f.store...)
}

// imp imports SRC_DIR into volume with --base base.
func (f *baseFixture) imp(t *testing.T, volume, base string) importResult {
	t.Helper()
	return decode[importResult](t, cli(t, f.args("import", f.src, volume, "--json", "--base", base, "--stat-cache", f.sc)...).ok(t))
}

// pages writes n random 8 KiB pages at random page offsets of the
// database file, as PostgreSQL does.
func (f *baseFixture) pages(t *testing.T, n int) {
	t.Helper()
	fh, err := os.OpenFile(f.db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	page := make([]byte, 8192)
	for range n {
		_, _ = rand.Read(page)
		if _, err := fh.WriteAt(page, int64(mrand.IntN(64<<20/8192))*8192); err != nil {
			t.Fatal(err)
		}
	}
}

// exportsAsSrc checks that snapshot id of volume exports exactly as
// SRC_DIR is now.
func (f *baseFixture) exportsAsSrc(t *testing.T, volume, id string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "x")
	cli(t, f.args("export", volume, dst, "--snapshot", id)...).ok(t)
	want, got := treeOf(t, f.src), treeOf(t, dst)
	if len(want) != len(got) {
		t.Fatalf("export of %s has %d entries, SRC_DIR %d", id, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("export of %s: %s is %q, in SRC_DIR %q", id, k, got[k], v)
		}
	}
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.Contains(e.Name(), ".portvol-new-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// import --base reads, after scattered page writes, about the pages
// written, and the result exports as the source; whenever the base cannot
// be proven to be what the head was read from (head moved by another
// import, base deleted, base of another volume) it says so, reads by
// stat, and is still exact; a SRC_DIR that is not a subvolume is refused.
func TestImportBase(t *testing.T) {
	f := newBaseFixture(t)
	base := filepath.Join(f.side, "pg.base")

	r := f.imp(t, "pg", base)
	if !strings.Contains(r.BaseFallback, "no base at") {
		t.Errorf("first import: fallback %q", r.BaseFallback)
	}
	if i, err := btrfs.Inspect(base); err != nil || !i.ReadOnly {
		t.Fatalf("the base after the first import: %+v, %v", i, err)
	}

	f.pages(t, 64)
	r = f.imp(t, "pg", base)
	if r.BaseFallback != "" {
		t.Fatalf("second import did not use the base: %s", r.BaseFallback)
	}
	// 64 pages of 8 KiB, each in one 16 KiB block: 1 MiB at most, of 67 MiB.
	if r.BytesRead > 1<<20 || r.FilesRead != 1 {
		t.Errorf("after 64 page writes the import read %d bytes in %d files, want at most 1 MiB in the one file", r.BytesRead, r.FilesRead)
	}
	f.exportsAsSrc(t, "pg", r.Snapshot)

	// Another writer (an import without --base) moves the head.
	f.pages(t, 16)
	cli(t, f.args("import", f.src, "pg")...).ok(t)
	f.pages(t, 16)
	r = f.imp(t, "pg", base)
	if !strings.Contains(r.BaseFallback, "another writer") || r.BytesRead < 64<<20 {
		t.Errorf("head moved: fallback %q, read %d bytes", r.BaseFallback, r.BytesRead)
	}
	f.exportsAsSrc(t, "pg", r.Snapshot)
	f.pages(t, 16)
	if r = f.imp(t, "pg", base); r.BaseFallback != "" || r.BytesRead > 1<<20 {
		t.Errorf("after the fallback the base was not used again: %q, read %d bytes", r.BaseFallback, r.BytesRead)
	}
	f.exportsAsSrc(t, "pg", r.Snapshot)

	// The base deleted.
	if err := btrfs.DeleteSubvolume(base); err != nil {
		t.Fatal(err)
	}
	f.pages(t, 16)
	r = f.imp(t, "pg", base)
	if !strings.Contains(r.BaseFallback, "is gone") {
		t.Errorf("base deleted: fallback %q", r.BaseFallback)
	}
	f.exportsAsSrc(t, "pg", r.Snapshot)

	// The base of another volume.
	f.pages(t, 16)
	r = f.imp(t, "other", base)
	if !strings.Contains(r.BaseFallback, "belongs to volume") {
		t.Errorf("another volume's base: fallback %q", r.BaseFallback)
	}
	f.exportsAsSrc(t, "other", r.Snapshot)
	f.pages(t, 16)
	r = f.imp(t, "pg", base)
	if !strings.Contains(r.BaseFallback, "belongs to volume") {
		t.Errorf("back to pg: fallback %q", r.BaseFallback)
	}
	f.exportsAsSrc(t, "pg", r.Snapshot)
	if l := leftovers(t, f.side); len(l) != 0 {
		t.Errorf("left beside the base: %v", l)
	}

	// Refused: SRC_DIR not a subvolume; a --base that is not a snapshot of it.
	plain := t.TempDir()
	cli(t, f.args("import", plain, "pg", "--base", filepath.Join(f.side, "x"))...).fails(t, exitUsage, "to be a btrfs subvolume")
	cli(t, f.args("import", f.src, "pg", "--base", filepath.Join(f.src, "base"))...).fails(t, exitUsage, "inside SRC_DIR")
	cli(t, f.args("import", f.src, "pg", "--base", f.side)...).fails(t, exitUsage, "not a base that import kept")
	// A snapshot of SRC_DIR that no record names (the user's own) is
	// neither used nor replaced.
	own := filepath.Join(f.side, "own")
	if err := btrfs.Snapshot(f.src, own, true); err != nil {
		t.Fatal(err)
	}
	cli(t, f.args("import", f.src, "pg", "--base", own)...).fails(t, exitUsage, "not a base that import kept")
	if ok, err := btrfs.IsSubvolume(own); err != nil || !ok {
		t.Errorf("the user's snapshot at --base is gone: %v", err)
	}
	// Two imports with one base: the second is refused while the first runs.
	held, err := openImportBase(base, f.src, "", "store", "pg", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	r2 := cli(t, f.args("import", f.src, "pg", "--base", base)...)
	held.close()
	if r2.code == exitOK || !strings.Contains(r2.stderr, "in use by another import") {
		t.Errorf("an import with a base in use: exit %d, %s", r2.code, r2.stderr)
	}
	f.imp(t, "pg", base)
}

// An import killed after its snapshot is published but before the base
// is replaced leaves the old base, which the next import does not use
// (the head moved); one killed between the swap and the record's rename
// leaves the new base, which the next import uses. Both stay exact and
// leave no snapshot behind.
func TestImportBaseKilled(t *testing.T) {
	f := newBaseFixture(t)
	base := filepath.Join(f.side, "pg.base")
	f.imp(t, "pg", base)
	for _, step := range []string{"published", "swapped"} {
		f.pages(t, 32)
		// Past the racy window before the import snapshots, as on a
		// loaded machine (where CI found the case below).
		time.Sleep(300 * time.Millisecond)
		p := startPortvol(t, []string{baseExitEnv + "=" + step}, f.args("import", f.src, "pg", "--base", base, "--stat-cache", f.sc)...)
		if code := p.wait(); code != 9 {
			t.Fatalf("%s: exit %d, want the injected 9\n%s", step, code, p.stderr.String())
		}
		// Written after the kill, so that the next import has something
		// to read: a directory equal to the published head is imported
		// as unchanged (nothing read, no base looked at) once its files
		// are older than the racy window, as they are on a loaded machine.
		f.pages(t, 8)
		r := f.imp(t, "pg", base)
		used := r.BaseFallback == ""
		if want := step == "swapped"; used != want {
			t.Errorf("killed at %s: base used %v (%q), want %v", step, used, r.BaseFallback, want)
		}
		f.exportsAsSrc(t, "pg", r.Snapshot)
		if l := leftovers(t, f.side); len(l) != 0 {
			t.Errorf("killed at %s: left beside the base: %v", step, l)
		}
	}
}

// Without btrfs: --base on a plain directory is a usage error that says
// what to do, and nothing is written to the store.
func TestImportBaseNeedsSubvolume(t *testing.T) {
	ts := localStore(t)
	store := []string{"--store", ts.url}
	cli(t, append([]string{"init"}, store...)...).ok(t)
	src := t.TempDir()
	makeTree(t, src)
	before := storeKeys(t, ts.store, "")
	r := cli(t, append([]string{"import", src, "pg", "--base", filepath.Join(t.TempDir(), "base")}, store...)...)
	r.fails(t, exitUsage, "to be a btrfs subvolume", "import without --base")
	if after := storeKeys(t, ts.store, ""); len(after) != len(before) {
		t.Errorf("a refused import wrote to the store: %d keys, then %d", len(before), len(after))
	}
}
