package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// churn is a ChangeSource that changes the live directory while Create
// is between its walk and its reads (it is asked about each file in
// between): what a database does to a directory copied file by file.
type churn struct {
	dir string
	act map[string]func(path string) // by relative path
}

func (c *churn) FileChanges(path string, _ uint64, _ uint64) (FileChanges, error) {
	if f := c.act[path]; f != nil {
		f(filepath.Join(c.dir, path))
	}
	return FileChanges{}, nil // read it all
}

func churnOf(t *testing.T, dir string) *churn {
	return &churn{dir: dir, act: map[string]func(string){
		"wal/000001": func(p string) { os.Remove(p) }, // recycled: the name goes away
		"checkpoint": func(p string) { // replaced by rename, as PostgreSQL does
			writeFile(t, p+".tmp", []byte("new checkpoint"), 0o600)
			os.Rename(p+".tmp", p)
		},
		"gone/f": func(string) { os.RemoveAll(filepath.Join(dir, "gone")) },
		"linked": func(p string) { os.Remove(p) }, // the first name of a hard link pair
	}}
}

func writeLiveTree(t *testing.T, dir string, gen string) {
	for _, d := range []string{"wal", "gone", "base"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	writeFile(t, filepath.Join(dir, "wal", "000001"), []byte("segment 1 "+gen), 0o600)
	writeFile(t, filepath.Join(dir, "wal", "000002"), []byte("segment 2 "+gen), 0o600)
	writeFile(t, filepath.Join(dir, "checkpoint"), []byte("old checkpoint "+gen), 0o600)
	writeFile(t, filepath.Join(dir, "gone", "f"), []byte("in a directory removed "+gen), 0o600)
	writeFile(t, filepath.Join(dir, "base", "table"), []byte("table "+gen), 0o600)
	os.Remove(filepath.Join(dir, "linked"))
	os.Remove(filepath.Join(dir, "zlink"))
	writeFile(t, filepath.Join(dir, "linked"), []byte("linked "+gen), 0o600)
	if err := os.Link(filepath.Join(dir, "linked"), filepath.Join(dir, "zlink")); err != nil {
		t.Fatal(err)
	}
}

// A live directory copied file by file completes under churn with Live:
// a file that vanishes before it is read is left out, one replaced under
// its name is read as it is then; without Live the same churn fails the
// snapshot with ErrChanged or a missing file, as it always did.
func TestCreateLiveUnderChurn(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, nil)
	dir := t.TempDir()
	writeLiveTree(t, dir, "1")
	parent, err := r.Create(ctx, "v", dir, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	writeLiveTree(t, dir, "2")
	if _, err := r.Create(ctx, "v", dir, CreateOptions{Parent: parent.ID, Changes: churnOf(t, dir)}); err == nil {
		t.Fatal("without Live, a snapshot of a directory changing under it succeeded")
	} else if !errors.Is(err, ErrChanged) && !errors.Is(err, os.ErrNotExist) {
		t.Logf("without Live: %v", err)
	}

	writeLiveTree(t, dir, "3")
	m, err := r.Create(ctx, "v", dir, CreateOptions{Parent: parent.ID, Changes: churnOf(t, dir), Live: true})
	if err != nil {
		t.Fatalf("Live snapshot under churn: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := r.Restore(ctx, "v", m.ID, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"wal/000002": "segment 2 3", "checkpoint": "new checkpoint", "base/table": "table 3",
	}
	for p, w := range want {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != w {
			t.Errorf("%s restored as %q, %v; want %q", p, b, err, w)
		}
	}
	for _, p := range []string{"wal/000001", "gone/f", "linked", "zlink"} {
		if _, err := os.Lstat(filepath.Join(out, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s vanished before it was read, but was restored: %v", p, err)
		}
	}
	if m.Stats.Files != 3 {
		t.Errorf("manifest counts %d files, want 3", m.Stats.Files)
	}
	// The next snapshot of the now quiet directory needs no Live.
	if _, err := r.Create(ctx, "v", dir, CreateOptions{Parent: m.ID}); err != nil {
		t.Errorf("next snapshot: %v", err)
	}
}
