package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/internal/needs"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
)

// requireBtrfs skips without root, btrfs or loop devices, except under
// CI=true, where the test fails: CI must run it.
func requireBtrfs(t *testing.T) { needs.Btrfs(t, btrfs.Available) }

// exportSubvolume is a btrfs subvolume, empty, in a pool image of its
// own on a loop device, unmounted at the end of the test.
func exportSubvolume(t *testing.T) string {
	t.Helper()
	requireBtrfs(t)
	state, err := os.MkdirTemp("/var/tmp", "portvol-export-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	ctx := context.Background()
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: state, PoolSize: 1 << 30, ForcePool: true})
	if err != nil {
		t.Fatalf("making a btrfs pool: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Pool().Unmount(); err != nil {
			t.Errorf("unmounting the test pool: %v", err)
		}
	})
	if err := c.Create(ctx, "exp", localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.Path("exp")
}

// strays lists what interrupted or failed exports left beside dst.
func strays(t *testing.T, dst string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".portvol-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// export --force onto an earlier export in a btrfs subvolume writes what
// changed in a snapshot of it and swaps it in; a target modified since
// takes the staging path; a failure half-way leaves the earlier export.
func TestExportInPlaceOnBtrfs(t *testing.T) {
	dst := exportSubvolume(t)
	ts := localStore(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	bigPath := filepath.Join(src, "base/1/big")
	big := make([]byte, 64<<20)
	_, _ = rand.Read(big)
	if err := os.WriteFile(bigPath, big, 0o600); err != nil {
		t.Fatal(err)
	}
	store := []string{"--store", ts.url}
	args := func(a ...string) []string { return append(append([]string{}, a...), store...) }
	cli(t, args("init")...).ok(t)
	v1 := decode[importResult](t, cli(t, args("import", src, "pg", "--json")...).ok(t))
	want1, big1 := treeOf(t, src), slices.Clone(big)

	// v2: 64 KiB changed in the middle of the 64 MiB file.
	time.Sleep(150 * time.Millisecond)
	f, err := os.OpenFile(bigPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := make([]byte, 64<<10)
	_, _ = rand.Read(patch)
	if _, err := f.WriteAt(patch, 30<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	copy(big[30<<20:], patch)
	packsBefore := storeKeys(t, ts.store, "packs/")
	v2 := decode[importResult](t, cli(t, args("import", src, "pg", "--json")...).ok(t))
	want2 := treeOf(t, src)
	var newPacks []string
	for _, k := range storeKeys(t, ts.store, "packs/") {
		if !slices.Contains(packsBefore, k) {
			newPacks = append(newPacks, k)
		}
	}

	sc := filepath.Join(base, "export.statcache")
	exportV1 := func(t *testing.T) {
		t.Helper()
		cli(t, args("export", "pg", dst, "--force", "--snapshot", v1.Snapshot, "--stat-cache", sc)...).ok(t)
		sameTree(t, want1, treeOf(t, dst))
		if ok, err := btrfs.IsSubvolume(dst); err != nil || !ok {
			t.Fatalf("after the export DST_DIR is no longer a subvolume (%v)", err)
		}
	}
	exportV2 := func(t *testing.T) exportResult {
		t.Helper()
		r := decode[exportResult](t, cli(t, args("export", "pg", dst, "--force", "--stat-cache", sc, "--json")...).ok(t))
		if r.Snapshot != v2.Snapshot {
			t.Fatalf("exported %s, want v2 %s", r.Snapshot, v2.Snapshot)
		}
		sameTree(t, want2, treeOf(t, dst))
		if !bytes.Equal(readFile(t, filepath.Join(dst, "base/1/big")), big) {
			t.Fatal("base/1/big differs from v2")
		}
		if s := strays(t, dst); len(s) > 0 {
			t.Errorf("left beside DST_DIR: %v", s)
		}
		return r
	}

	t.Run("InPlace", func(t *testing.T) {
		exportV1(t)
		r := exportV2(t)
		if r.Method != methodInPlace || r.Previous != v1.Snapshot {
			t.Fatalf("export onto v1: %+v, want in place from %s", r, v1.Snapshot)
		}
		if r.TransferredBytes == 0 || r.TransferredBytes > 1<<20 {
			t.Errorf("fetched %d bytes for a 64 KiB change in a 64 MiB file", r.TransferredBytes)
		}
		if r.Files != 5 || r.ReusedBytes < 60<<20 {
			t.Errorf("result %+v: want 5 files, about 64 MiB kept in place", r)
		}
		if ok, err := btrfs.IsSubvolume(dst); err != nil || !ok {
			t.Fatalf("after the in-place export DST_DIR is no longer a subvolume (%v)", err)
		}
		// The stat cache now describes v2: again, nothing to fetch.
		again := exportV2(t)
		if again.Method != methodInPlace || again.TransferredBytes != 0 {
			t.Errorf("export of v2 onto v2: %+v, want in place, nothing fetched", again)
		}
		out := cli(t, args("export", "pg", dst, "--force", "--stat-cache", sc)...).ok(t).stdout
		if !strings.Contains(out, "in place") {
			t.Errorf("the text output does not say in place:\n%s", out)
		}
	})

	t.Run("ModifiedTargetTakesStaging", func(t *testing.T) {
		exportV1(t)
		time.Sleep(150 * time.Millisecond)
		p := filepath.Join(dst, "global/pg_control")
		if err := os.WriteFile(p, []byte{1, 2, 3}, 0o600); err != nil { // same content, rewritten
			t.Fatal(err)
		}
		r := exportV2(t)
		if r.Method != methodStaging || !strings.Contains(r.StagingReason, "global/pg_control changed") {
			t.Errorf("export onto a modified target: %+v, want the staging path, naming the changed file", r)
		}
		// Without a stat cache, nothing is proven either.
		os.Remove(sc)
		r = decode[exportResult](t, cli(t, args("export", "pg", dst, "--force", "--json")...).ok(t))
		if r.Method != methodStaging || !strings.Contains(r.StagingReason, "stat-cache") {
			t.Errorf("export without a stat cache: %+v, want the staging path", r)
		}
		sameTree(t, want2, treeOf(t, dst))
	})

	t.Run("FailureLeavesV1", func(t *testing.T) {
		exportV1(t)
		saved := map[string][]byte{}
		for _, k := range newPacks {
			rc, err := ts.store.Get(context.Background(), k, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			saved[k], _ = io.ReadAll(rc)
			rc.Close()
			flipByte(t, ts.store, k)
		}
		cli(t, args("export", "pg", dst, "--force", "--stat-cache", sc)...).fails(t, exitError, "corrupt", "is unchanged")
		sameTree(t, want1, treeOf(t, dst))
		if !bytes.Equal(readFile(t, filepath.Join(dst, "base/1/big")), big1) {
			t.Fatal("base/1/big is not v1 after the failed export")
		}
		if s := strays(t, dst); len(s) > 0 {
			t.Errorf("a failed export left %v", s)
		}
		for k, data := range saved {
			if err := ts.store.Put(context.Background(), k, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
		}
		// What a crash mid-restore leaves: a writable snapshot beside
		// DST_DIR. The next export deletes it, and still goes in place.
		if err := btrfs.Snapshot(dst, filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+subvolInfix+"0123456789abcdef"), false); err != nil {
			t.Fatal(err)
		}
		if r := exportV2(t); r.Method != methodInPlace {
			t.Errorf("export after the failure: %+v, want in place", r)
		}
	})
}
