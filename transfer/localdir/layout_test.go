package localdir_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

func TestRelativeRootRejected(t *testing.T) {
	_, err := localdir.New("relative/store")
	if !errors.Is(err, transfer.ErrPermanent) {
		t.Fatalf("New with a relative path: %v, want a permanent error", err)
	}
}

// A crashed writer's temp file is cleaned up once it is old, kept while it
// may belong to a live writer, and never listed.
func TestCrashLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := localdir.New(root)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, ".portvol", "tmp")
	old := filepath.Join(tmp, "deadbeef.tmp")
	young := filepath.Join(tmp, "cafe.tmp")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.List(context.Background(), "", func(transfer.ObjectInfo) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("List shows %d objects (%v); temp files must not be listed", n, err)
	}
	if _, err := localdir.New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a two-hour-old temp file survived reopening the store: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a fresh temp file (maybe a live writer's) was removed: %v", err)
	}
}

func TestReservedAndEscapingKeys(t *testing.T) {
	root := t.TempDir()
	s, err := localdir.New(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{".portvol/tmp/x", ".portvol", "../outside", "a/../../outside"} {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1); !errors.Is(err, transfer.ErrPermanent) {
			t.Errorf("Put(%q): %v, want a permanent invalid-key error", k, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "outside")); err == nil {
		t.Fatal("a key escaped the store directory")
	}
	// A symlink planted in the store is not followed out of it.
	secret := filepath.Join(root, "secret")
	if err := os.WriteFile(secret, []byte("not for the store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(s.Root(), "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "link", 0, -1); !errors.Is(err, transfer.ErrNotExist) {
		t.Errorf("Get of a symlink: %v, want ErrNotExist", err)
	}
}

// Two records of the same size written within one timestamp tick (as on
// NFS) must still get different ETags, or a stale PutIfMatch would win.
func TestETagSameSizeSameMtime(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	e1, err := s.PutIfAbsent(ctx, "head.json", []byte(`{"g":1}`))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Root(), "head.json")
	fi, _ := os.Stat(p)
	e2, err := s.PutIfMatch(ctx, "head.json", []byte(`{"g":2}`), e1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	oi, err := s.Stat(ctx, "head.json")
	if err != nil {
		t.Fatal(err)
	}
	if oi.ETag != e2 || e2 == e1 {
		t.Fatalf("ETags: first %q, second %q, Stat %q: want the second to differ and Stat to match it", e1, e2, oi.ETag)
	}
	if _, err := s.PutIfMatch(ctx, "head.json", []byte(`{"g":3}`), e1); !errors.Is(err, transfer.ErrPrecondition) {
		t.Fatalf("PutIfMatch with the first ETag: %v, want ErrPrecondition", err)
	}
}

// Deleting the last object of a prefix removes its empty directories, and
// the key's lock file, so neither piles up.
func TestDeleteCleansUp(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.PutIfAbsent(ctx, "volumes/v1/head.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "volumes/v1/head.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "volumes")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty prefix directories remain after Delete: %v", err)
	}
	locks, _ := os.ReadDir(filepath.Join(s.Root(), ".portvol", "locks"))
	if len(locks) != 0 {
		t.Errorf("%d lock files remain after deleting the only conditionally written key", len(locks))
	}
}
