package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func medianOf(rs []result, f func(result) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	slices.Sort(xs)
	if len(xs) == 0 {
		return 0
	}
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func secs(d time.Duration) float64 { return d.Seconds() }
func mib(n uint64) float64         { return float64(n) / (1 << 20) }

func writeReport(path string, all []result, load0, load1 string, elapsed time.Duration) error {
	var sizes []int
	by := map[int][]result{}
	for _, r := range all {
		if _, ok := by[r.gib]; !ok {
			sizes = append(sizes, r.gib)
		}
		by[r.gib] = append(by[r.gib], r)
	}
	changed := float64(changePage * pageSize)
	var b strings.Builder
	fmt.Fprintf(&b, "## Small scattered changes: half-empty pages\n\n")
	fmt.Fprintf(&b, "`make bench-pages`: volumes of 256 MiB files of 8 KiB pages (4 KiB random, 4 KiB zero), an encrypted `file://` store on the same disk, the snapshot engine in-process; then the same 16 MiB of scattered 8 KiB page writes (2048 pages). The page cache is dropped before every step. Median of %d runs per size; wall-clock seconds.\n\n", len(by[sizes[0]]))
	fmt.Fprintf(&b, "| figure |")
	for _, s := range sizes {
		fmt.Fprintf(&b, " %d GiB |", s)
	}
	if len(sizes) == 2 {
		fmt.Fprintf(&b, " %d GiB / %d GiB |", sizes[1], sizes[0])
	}
	fmt.Fprintf(&b, "\n|---|")
	for range sizes {
		fmt.Fprintf(&b, "--:|")
	}
	if len(sizes) == 2 {
		fmt.Fprintf(&b, "--:|")
	}
	fmt.Fprintf(&b, "\n")
	row := func(name string, f func(result) float64, format string, ratio bool) {
		fmt.Fprintf(&b, "| %s |", name)
		var vals []float64
		for _, s := range sizes {
			v := medianOf(by[s], f)
			vals = append(vals, v)
			fmt.Fprintf(&b, " "+format+" |", v)
		}
		if len(sizes) == 2 {
			if ratio && vals[0] > 0 {
				fmt.Fprintf(&b, " ×%.2f |", vals[1]/vals[0])
			} else {
				fmt.Fprintf(&b, " |")
			}
		}
		fmt.Fprintf(&b, "\n")
	}
	row("initial snapshot (s)", func(r result) float64 { return secs(r.initial) }, "%.2f", true)
	row("initial snapshot: uploaded (MiB)", func(r result) float64 { return mib(r.initialUp) }, "%.0f", true)
	row("no-change snapshot (s; reported unchanged, nothing stored)", func(r result) float64 { return secs(r.unchanged) }, "%.3f", true)
	row("no-change snapshot: uploaded (bytes)", func(r result) float64 { return float64(r.unchangedUp) }, "%.0f", false)
	row("**snapshot of the change, with a ChangeSource** (s)", func(r result) float64 { return secs(r.snapSrc) }, "%.2f", true)
	row("  read (MiB; × bytes changed)", func(r result) float64 { return mib(r.readSrc) }, "%.1f", true)
	row("  read / changed (target ≤ 4)", func(r result) float64 { return float64(r.readSrc) / changed }, "%.2f", false)
	row("  uploaded (MiB)", func(r result) float64 { return mib(r.upSrc) }, "%.1f", true)
	row("  uploaded / changed (target ≤ 2)", func(r result) float64 { return float64(r.upSrc) / changed }, "%.2f", false)
	row("snapshot of the change, stat-based (no ChangeSource) (s)", func(r result) float64 { return secs(r.snapStat) }, "%.2f", true)
	row("  read (MiB: the changed files whole)", func(r result) float64 { return mib(r.readStat) }, "%.0f", true)
	row("  uploaded / changed", func(r result) float64 { return float64(r.upStat) / changed }, "%.2f", false)
	row("**pre-staged restore, in place** (s)", func(r result) float64 { return secs(r.inPlace) }, "%.2f", true)
	row("  fetched (MiB)", func(r result) float64 { return mib(r.fetchedInPlace) }, "%.1f", true)
	row("pre-staged restore through a staging tree, as `export --force` into a plain directory (s)", func(r result) float64 { return secs(r.staged) }, "%.2f", true)
	row("**cold restore** (s)", func(r result) float64 { return secs(r.cold) }, "%.2f", true)
	row("dd + sync of the same files (s)", func(r result) float64 { return secs(r.dd) }, "%.2f", true)
	row("cold restore / dd + sync (target ≤ 1.5)", func(r result) float64 { return secs(r.cold) / secs(r.dd) }, "%.2f", false)
	if all[0].b != nil {
		fmt.Fprintf(&b, "| **on btrfs**: a nodatacow subvolume in a pool image on the same disk, as the driver keeps volumes; snapshots read from read-only instants, the last one kept as the base | | | |\n")
		bf := func(f func(*btrfsResult) float64) func(result) float64 {
			return func(r result) float64 { return f(r.b) }
		}
		row("initial snapshot (s; freeze included)", bf(func(r *btrfsResult) float64 { return secs(r.initial) }), "%.2f", true)
		row("**snapshot of the change, btrfs ChangeSource** (s; freeze and change search included)", bf(func(r *btrfsResult) float64 { return secs(r.snapSrc) }), "%.2f", true)
		row("  files found changed", bf(func(r *btrfsResult) float64 { return float64(r.changedFiles) }), "%.0f", false)
		row("  read (MiB)", bf(func(r *btrfsResult) float64 { return mib(r.readSrc) }), "%.1f", true)
		row("  read / changed (target ≤ 4)", bf(func(r *btrfsResult) float64 { return float64(r.readSrc) / changed }), "%.2f", false)
		row("  uploaded / changed (target ≤ 2)", bf(func(r *btrfsResult) float64 { return float64(r.upSrc) / changed }), "%.2f", false)
		row("snapshot of the change without it (stats; the changed files read whole) (s)", bf(func(r *btrfsResult) float64 { return secs(r.snapNoSrc) }), "%.2f", true)
		row("  read / changed", bf(func(r *btrfsResult) float64 { return float64(r.readNoSrc) / changed }), "%.1f", false)
		row("  uploaded / changed", bf(func(r *btrfsResult) float64 { return float64(r.upNoSrc) / changed }), "%.2f", false)
		row("**pre-staged restore**: writable snapshot, in place, syncfs, swap (s)", bf(func(r *btrfsResult) float64 { return secs(r.inPlace) }), "%.2f", true)
		row("  fetched (MiB)", bf(func(r *btrfsResult) float64 { return mib(r.fetchedInPlace) }), "%.1f", true)
		row("**`export --force` onto the previous export**, in place (s; the portvol command: stat-cache proof, writable snapshot, delta, syncfs, swap)", bf(func(r *btrfsResult) float64 { return secs(r.export) }), "%.2f", true)
		row("  fetched (MiB)", bf(func(r *btrfsResult) float64 { return mib(r.fetchedExport) }), "%.1f", true)
		row("**cold restore** into a subvolume (s)", bf(func(r *btrfsResult) float64 { return secs(r.cold) }), "%.2f", true)
		row("dd + sync of the same files into a subvolume (s)", bf(func(r *btrfsResult) float64 { return secs(r.dd) }), "%.2f", true)
		row("cold restore / dd + sync (target ≤ 1.5)", bf(func(r *btrfsResult) float64 { return secs(r.cold) / secs(r.dd) }), "%.2f", false)
	}
	host, _ := os.Hostname()
	_ = host
	fmt.Fprintf(&b, "\nReproduce: `make bench-pages` (as root; `BENCH_PAGES_FLAGS='-runs 3 -gib 1,4 -lock /tmp/portvol-docker.lock'`). %s, %d CPUs; measured %s (%s for all runs). The machine was shared with other work: load average (1, 5, 15 min) %s at the start, %s at the end.\n",
		runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), elapsed.Round(time.Second), load0, load1)
	return replaceSection(path, "pages", b.String())
}

// replaceSection puts section between the bench:<name> markers of the
// file at path, appending the markers if the file lacks them.
func replaceSection(path, name, section string) error {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	block := begin + "\n" + section + end + "\n"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + block + strings.TrimPrefix(s[j+len(end):], "\n")
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + block
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
