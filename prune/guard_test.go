package prune_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

// hookStore runs before() when a manifest is about to be written, and can
// refuse manifest writes, to place a prune exactly inside a Create.
type hookStore struct {
	transfer.ObjectStore
	before     func()
	noManifest bool
}

func (h *hookStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if strings.HasPrefix(key, "snapshots/") {
		if h.noManifest {
			return "", errors.New("killed before the manifest")
		}
		if h.before != nil {
			h.before()
		}
	}
	return h.ObjectStore.PutIfAbsent(ctx, key, data)
}

// TestWriterNeverReusesMarkedPack: an import is killed after uploading its
// packs; a prune marks them (old enough, unreferenced); the import is run
// again with the same data and would deduplicate against those packs, and
// a prune's sweep lands right before its manifest is written. The snapshot
// must still verify: the writer saw the collection record and uploaded
// again instead of reusing a pack about to be deleted.
func TestWriterNeverReusesMarkedPack(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	if err := snapshot.Init(ctx, mem, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, rand.New(rand.NewPCG(1, 2)), filepath.Join(dir, "f"), 8, 8)
	hook := &hookStore{ObjectStore: mem, noManifest: true}
	repo, err := snapshot.Open(ctx, hook, snapshot.Options{Fossils: prune.Fossils(hook)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Create(ctx, "v", dir, snapshot.CreateOptions{}); err == nil {
		t.Fatal("the first import was not interrupted")
	}
	plain, err := snapshot.Open(ctx, mem, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Marked == 0 {
		t.Fatalf("the interrupted import's packs were not marked: %+v", res)
	}
	hook.noManifest = false
	hook.before = func() {
		if _, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true}); err != nil {
			t.Error(err)
		}
	}
	m, err := repo.Create(ctx, "v", dir, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Verify(ctx, "v", m.ID); err != nil {
		t.Fatalf("a snapshot written while its packs were swept is broken: %v", err)
	}
}

// TestCreateRefusesPackMarkedDuringRun: a prune marks a pack the Create
// already decided to reuse; the Create's last look finds it listed and
// publishes nothing (ErrCollected) rather than a manifest a sweep could
// break; the retry succeeds and verifies after the sweep.
func TestCreateRefusesPackMarkedDuringRun(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	if err := snapshot.Init(ctx, mem, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, rand.New(rand.NewPCG(3, 4)), filepath.Join(dir, "f"), 8, 8)
	hook := &hookStore{ObjectStore: mem, noManifest: true}
	repo, err := snapshot.Open(ctx, hook, snapshot.Options{Fossils: prune.Fossils(hook)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Create(ctx, "v", dir, snapshot.CreateOptions{}); err == nil {
		t.Fatal("the first import was not interrupted")
	}
	plain, err := snapshot.Open(ctx, mem, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The mark lands after the Create reused the leftover packs, before
	// its last look: the fossil check at the start saw nothing.
	hook.noManifest = false
	marked := false
	fossils := prune.Fossils(mem)
	repo2, err := snapshot.Open(ctx, hook, snapshot.Options{Fossils: func(ctx context.Context) (map[string]bool, error) {
		f, err := fossils(ctx)
		if !marked {
			marked = true
			if _, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true}); err != nil {
				t.Error(err)
			}
		}
		return f, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo2.Create(ctx, "v", dir, snapshot.CreateOptions{})
	if !errors.Is(err, snapshot.ErrCollected) {
		t.Fatalf("Create reused packs marked for deletion: got %v, want ErrCollected", err)
	}
	if _, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true}); err != nil {
		t.Fatal(err)
	}
	m, err := repo2.Create(ctx, "v", dir, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true}); err != nil {
		t.Fatal(err)
	}
	if err := plain.Verify(ctx, "v", m.ID); err != nil {
		t.Fatal(err)
	}
}
