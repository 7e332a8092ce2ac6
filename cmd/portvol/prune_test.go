package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestForgetAndPrune: seven imports (seven generations), forget with
// --keep-last 1 keeps the head and the bases of the four generations below
// it, --dry-run deletes nothing, and two prunes with --margin 0s reclaim the
// forgotten snapshots' packs while every kept snapshot still verifies.
func TestForgetAndPrune(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	store := []string{"--store", ts.url}
	args := func(a ...string) []string { return append(append([]string{}, a...), store...) }
	cli(t, args("init")...).ok(t)
	for i := range 7 {
		time.Sleep(150 * time.Millisecond) // past the racy window of the last import
		if err := os.WriteFile(filepath.Join(src, "base/1/1259"), []byte(fmt.Sprintf("version %d with its own bytes", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		cli(t, args("import", src, "pg")...).ok(t)
	}
	dry := decode[forgetJSON](t, cli(t, args("forget", "pg", "--keep-last", "1", "--dry-run", "--json")...).ok(t))
	if dry.Forgotten != 2 || dry.Kept != 5 || !dry.DryRun {
		t.Fatalf("forget --dry-run: %+v", dry)
	}
	if n := len(decode[[]snapshotJSON](t, cli(t, args("snapshots", "pg", "--json")...).ok(t))); n != 7 {
		t.Fatalf("a dry run forgot snapshots: %d left", n)
	}
	res := decode[forgetJSON](t, cli(t, args("forget", "pg", "--keep-last", "1", "--json")...).ok(t))
	if res.Forgotten != 2 || res.Snapshots[0].ID != res.Head || !res.Snapshots[0].Keep {
		t.Fatalf("forget: %+v", res)
	}
	list := decode[[]snapshotJSON](t, cli(t, args("snapshots", "pg", "--json")...).ok(t))
	if len(list) != 5 || !list[len(list)-1].Head {
		t.Fatalf("after forget: %+v", list)
	}
	before := len(storeKeys(t, ts.store, "packs/"))
	first := decode[pruneJSON](t, cli(t, args("prune", "--margin", "0s", "--json")...).ok(t))
	second := decode[pruneJSON](t, cli(t, args("prune", "--margin", "0s", "--json")...).ok(t))
	after := len(storeKeys(t, ts.store, "packs/"))
	if first.Marked == 0 || second.Deleted != first.Marked || after != before-first.Marked || second.Unreferenced != 0 {
		t.Errorf("prune: %d packs before, %d after; first run %+v, second %+v", before, after, first, second)
	}
	cli(t, args("verify", "pg", "--all")...).ok(t)
	cli(t, args("prune", "--margin", "-1s")...).fails(t, 2, "must not be negative")
}
