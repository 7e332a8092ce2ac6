package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// References names exactly what a format 2 snapshot needs: deleting
// every other object of the store (other volumes' packs, indexes, older
// snapshots' packs) leaves the snapshot restorable and verified, and
// deleting any pack it names breaks it.
func TestReferencesIsWhatASnapshotNeeds(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	r.packSize = 256 << 10 // several packs
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	halfEmptyPages(t, filepath.Join(src, "pages"), 4<<20)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scatterPages(t, filepath.Join(src, "pages"), 20, 3)
	writeFile(t, filepath.Join(src, "big.bin"), randBytes(2<<20), 0o600)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, "w", src, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var need []string
	var prefixes []string
	err = r.References(ctx, "v", m2.ID, func(ref Reference) error {
		if ref.Prefix {
			prefixes = append(prefixes, ref.Key)
		} else {
			need = append(need, ref.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(need) != len(slices.Compact(slices.Sorted(slices.Values(need)))) {
		t.Errorf("a key named twice: %v", need)
	}
	for _, k := range storeKeys(t, fs, "") {
		if k != "config" && !slices.Contains(need, k) && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			if err := fs.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatalf("restore with only the named objects: %v", err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))
	if err := r.Verify(ctx, "v", m2.ID); err != nil {
		t.Fatal(err)
	}
	// Each named pack is needed.
	for _, k := range need {
		if !strings.HasPrefix(k, "packs/") {
			continue
		}
		data := getObject(t, fs, k)
		fs.Delete(ctx, k)
		if err := r.Verify(ctx, "v", m2.ID); !errors.Is(err, ErrCorrupt) {
			t.Errorf("snapshot verifies without %s: %v", k, err)
		}
		putObject(t, fs, k, data)
	}
	if err := r.References(ctx, "v", "20260801T120000Z-0123456789abcdef", func(Reference) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("References of a missing snapshot: %v", err)
	}
}

func getObject(t *testing.T, s *faultStore, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func putObject(t *testing.T, s *faultStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}
