//go:build prunebench

package prune_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer/localdir"
)

var (
	benchBinary = flag.String("portvol", "", "portvol binary to time (make bench-prune builds it)")
	benchDir    = flag.String("bench-dir", "", "where to build the store (default: a temporary directory)")
)

// TestPruneBenchmark builds a local-directory store of 10 volumes × 100
// snapshots = 1,000 snapshots holding 100,000 distinct chunks (each
// snapshot rewrites 100 blocks), forgets half of each volume's snapshots,
// then times `portvol prune --margin 0s` twice (mark, then sweep) in a
// child process and reports its wall time and peak RSS, against the floor
// of reading every manifest once in the same run. make bench-prune.
func TestPruneBenchmark(t *testing.T) {
	if *benchBinary == "" {
		t.Fatal("pass -portvol PATH (make bench-prune does)")
	}
	ctx := context.Background()
	dir := *benchDir
	if dir == "" {
		dir = t.TempDir()
	}
	storeDir := filepath.Join(dir, "store")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := localdir.New(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Init(ctx, st, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{Fossils: prune.Fossils(st)})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := lease.New(st, lease.Options{Host: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	const volumes, snaps, files, perSnap = 10, 100, 400, 50 // 50 files × 2 blocks = 100 chunks
	start := time.Now()
	counter := uint64(0)
	buf := make([]byte, 2*blockSize)
	write := func(path string) {
		for b := range 2 {
			counter++
			for i := range 8 {
				buf[b*blockSize+i] = byte(counter >> (8 * i))
			}
			buf[b*blockSize+8] = 1
		}
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for v := range volumes {
		name := fmt.Sprintf("vol%02d", v)
		src := filepath.Join(dir, "src", name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range files {
			write(filepath.Join(src, fmt.Sprintf("f%03d", f)))
		}
		l, err := lm.Acquire(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for s := range snaps {
			if s > 0 {
				for f := range perSnap {
					write(filepath.Join(src, fmt.Sprintf("f%03d", (s*perSnap+f)%files)))
				}
			}
			m, err := repo.Create(ctx, name, src, snapshot.CreateOptions{Parent: l.Head(), Host: "bench", Generation: l.Generation()})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Publish(ctx, m.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := prune.Forget(ctx, repo, st, name, prune.Policy{Last: snaps / 2}, prune.ForgetOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("store built in %s: %d chunks written", time.Since(start).Round(time.Second), counter)

	// Floor: read every manifest once, as prune must.
	floorStart := time.Now()
	n := 0
	if err := snapshot.Objects(ctx, st, snapshot.KindManifest, func(o snapshot.Object) error {
		n++
		return repo.References(ctx, o.Volume, o.Snapshot, func(snapshot.Reference) error { return nil })
	}); err != nil {
		t.Fatal(err)
	}
	floor := time.Since(floorStart)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("floor: reading the references of %d manifests sequentially: %s (load average %s)", n, floor.Round(time.Millisecond), string(load[:min(len(load), 14)]))
	for i := range 2 {
		cmd := exec.Command(*benchBinary, "prune", "--store", "file://"+storeDir, "--margin", "0s", "--json", "--host-id", "bench")
		cmd.Stderr = os.Stderr
		t0 := time.Now()
		out, err := cmd.Output()
		wall := time.Since(t0)
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatal(err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		t.Logf("prune run %d (%s): %s wall (%.1f× the floor), peak RSS %.1f MiB; manifests %v, packs %v, marked %v, deleted %v (%.1f MiB)",
			i+1, map[int]string{0: "mark", 1: "sweep"}[i], wall.Round(time.Millisecond), float64(wall)/float64(floor),
			float64(ru.Maxrss)/1024, res["manifests"], res["packs"], res["marked_packs"], res["deleted_packs"], res["deleted_bytes"].(float64)/(1<<20))
	}
}
