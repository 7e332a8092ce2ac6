package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A stat cache that cannot be written does not fail the snapshot (it is
// an optimisation): Create returns the snapshot and says why in CacheErr;
// the next Create with a writable cache works as usual. Before, Create failed, and a caller that retries
// (the driver's final snapshot) retried for ever.
func TestUnwritableStatCacheDoesNotFailTheSnapshot(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "f"), randBytes(1<<20), 0o600)
	time.Sleep(20 * time.Millisecond) // past the (test-sized) racy window
	// The cache's directory is a file: writing the cache fails, as on a
	// full disk.
	blocked := filepath.Join(base, "blocked")
	writeFile(t, blocked, []byte("x"), 0o600)
	m, err := r.Create(ctx, "v", src, CreateOptions{StatCache: filepath.Join(blocked, "statcache")})
	if err != nil {
		t.Fatalf("Create with an unwritable stat cache: %v", err)
	}
	if m.CacheErr == nil {
		t.Error("CacheErr not set")
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))

	// Unchanged since its parent (SkipUnchanged): the same.
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m.ID, StatCache: filepath.Join(blocked, "statcache"), SkipUnchanged: true})
	if err != nil || !m2.Unchanged || m2.CacheErr == nil {
		t.Fatalf("unchanged Create with an unwritable stat cache: unchanged %v, CacheErr %v, %v", m2 != nil && m2.Unchanged, m2 != nil && m2.CacheErr != nil, err)
	}
	cache := filepath.Join(base, "statcache")
	m3, err := r.Create(ctx, "v", src, CreateOptions{Parent: m.ID, StatCache: cache})
	if err != nil || m3.CacheErr != nil {
		t.Fatalf("Create with a writable cache: %v, %v", err, m3.CacheErr)
	}
	if _, err := os.Stat(cache); err != nil {
		t.Errorf("stat cache not written: %v", err)
	}
}
