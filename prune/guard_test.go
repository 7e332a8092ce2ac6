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
	// loseAnswer applies manifest writes and then reports them failed:
	// an answer lost after the store applied the write.
	loseAnswer bool
}

func (h *hookStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if strings.HasPrefix(key, "snapshots/") {
		if h.noManifest {
			return "", errors.New("killed before the manifest")
		}
		if h.before != nil {
			h.before()
		}
		if h.loseAnswer {
			if _, err := h.ObjectStore.PutIfAbsent(ctx, key, data); err != nil {
				return "", err
			}
			return "", errors.New("connection reset: the answer to the manifest write was lost")
		}
	}
	return h.ObjectStore.PutIfAbsent(ctx, key, data)
}

// guardFixture is a new store and a directory holding one file of 8
// random blocks (seeded).
func guardFixture(t *testing.T, seed1, seed2 uint64) (context.Context, *memstore.Store, string) {
	t.Helper()
	ctx := context.Background()
	mem := memstore.New()
	if err := snapshot.Init(ctx, mem, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, rand.New(rand.NewPCG(seed1, seed2)), filepath.Join(dir, "f"), 8, 8)
	return ctx, mem, dir
}

// TestWriterNeverReusesMarkedPack: an import is killed after uploading its
// packs; a prune marks them (old enough, unreferenced); the import is run
// again with the same data and would deduplicate against those packs, and
// a prune's sweep lands right before its manifest is written. The snapshot
// must still verify: the writer saw the collection record and uploaded
// again instead of reusing a pack about to be deleted.
func TestWriterNeverReusesMarkedPack(t *testing.T) {
	ctx, mem, dir := guardFixture(t, 1, 2)
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
	ctx, mem, dir := guardFixture(t, 3, 4)
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

// TestLostManifestAnswerAfterStall: a Create stalls between its last look
// and its manifest write long enough for a prune to mark and sweep the
// packs it uploaded (still unreferenced), and the store applies the
// manifest write but the answer is lost. The Create reports failure; it
// must not leave behind a listed snapshot whose packs are gone (found by
// TestRandomizedPrune under load: the manifest stayed, since only a
// write known to succeed got the second look).
func TestLostManifestAnswerAfterStall(t *testing.T) {
	ctx, mem, dir := guardFixture(t, 5, 6)
	plain, err := snapshot.Open(ctx, mem, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	swept := 0
	hook := &hookStore{ObjectStore: mem, loseAnswer: true, before: func() {
		// The stall: a mark, then a sweep, of the packs no manifest names yet.
		for range 2 {
			res, err := prune.Run(ctx, plain, mem, prune.Options{ZeroMargin: true})
			if err != nil {
				t.Error(err)
			}
			swept += res.Deleted
		}
	}}
	repo, err := snapshot.Open(ctx, hook, snapshot.Options{Fossils: prune.Fossils(hook)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Create(ctx, "v", dir, snapshot.CreateOptions{}); err == nil {
		t.Fatal("Create reported success for a manifest write whose answer was lost")
	}
	if swept == 0 {
		t.Fatal("the prune inside the stall deleted nothing: the test places nothing in harm's way")
	}
	infos, err := plain.List(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if err := plain.Verify(ctx, "v", in.ID); err != nil {
			t.Errorf("listed snapshot %s does not verify: %v", in.ID, err)
		}
	}
	if len(infos) != 0 {
		t.Errorf("the failed Create left %d listed snapshot(s); want none", len(infos))
	}
	// The same data imports cleanly afterwards.
	hook.loseAnswer, hook.before = false, nil
	m, err := repo.Create(ctx, "v", dir, snapshot.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Verify(ctx, "v", m.ID); err != nil {
		t.Fatal(err)
	}
}
