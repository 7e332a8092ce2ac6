package localdir_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

// Open uses a store that exists and creates nothing: a mistyped path, an
// empty directory (a file system that is not mounted) and a directory that
// vanishes under an open store are all "store missing", never an empty
// store, and nothing recreates them.
func TestOpenCreatesNothing(t *testing.T) {
	base := t.TempDir()
	typo := filepath.Join(base, "typo", "store")
	if _, err := localdir.Open(typo); !errors.Is(err, transfer.ErrStoreMissing) || !strings.Contains(err.Error(), typo) {
		t.Errorf("Open of a missing directory: %v; want ErrStoreMissing naming it", err)
	}
	if _, err := os.Stat(filepath.Join(base, "typo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created something: %v", err)
	}
	empty := filepath.Join(base, "mnt")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := localdir.Open(empty); !errors.Is(err, transfer.ErrStoreMissing) || !strings.Contains(err.Error(), "holds no portvol store") {
		t.Errorf("Open of an empty directory: %v; want ErrStoreMissing", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("Open wrote %d entries into an empty directory", len(ents))
	}

	root := filepath.Join(base, "store")
	if _, err := localdir.New(root); err != nil {
		t.Fatal(err)
	}
	s, err := localdir.Open(root)
	if err != nil {
		t.Fatalf("Open of a store New made: %v", err)
	}
	ctx := context.Background()
	if _, err := s.PutIfAbsent(ctx, "volumes/v/head.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// The directory vanishes (unmounted, removed): writes fail as
	// "store missing" and do not bring it back.
	if err := os.Rename(root, root+".away"); err != nil {
		t.Fatal(err)
	}
	writes := map[string]error{
		"Put":         s.Put(ctx, "packs/aa/x", bytes.NewReader([]byte("x")), 1),
		"PutIfAbsent": func() error { _, err := s.PutIfAbsent(ctx, "volumes/w/head.json", []byte("{}")); return err }(),
		"PutIfMatch":  func() error { _, err := s.PutIfMatch(ctx, "volumes/v/head.json", []byte("{}"), "x"); return err }(),
	}
	for op, err := range writes {
		if !errors.Is(err, transfer.ErrStoreMissing) {
			t.Errorf("%s after the directory vanished: %v; want ErrStoreMissing", op, err)
		}
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write recreated the vanished store directory: %v", err)
	}
}

// A 4 GiB record (a sparse file, so the test stays cheap) is refused from
// its size alone: the error names the key and the bound, and memory does
// not grow.
func TestLoadHugeRecord(t *testing.T) {
	s := newStore(t)
	key := "volumes/v/head.json"
	p := filepath.Join(s.Root(), filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err = s.Load(context.Background(), key, 4096)
	if !errors.Is(err, transfer.ErrTooLarge) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("Load of a 4 GiB record: %v; want ErrTooLarge naming the key and the bound", err)
	}
	_, err = transfer.ReadAll(context.Background(), s, key, 4096)
	if !errors.Is(err, transfer.ErrTooLarge) {
		t.Fatalf("ReadAll of a 4 GiB record: %v; want ErrTooLarge", err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing a 4 GiB record allocated %d bytes", grew)
	}
}
