package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/portvol/portvol/localcopy/btrfs"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeReport puts the tables between the bench:volfs markers of c.out.
func writeReport(c config, r *result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- bench:volfs -->\n## Volume filesystems: PostgreSQL on btrfs subvolumes vs an ext4 directory\n\n")
	fmt.Fprintf(&b, "`make bench-volfs` on %s, %d CPUs, load average %.1f–%.1f during the run (a shared machine: compare ratios, not absolute figures), %s. ",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), minf(r.load), maxf(r.load), pgVersion())
	fmt.Fprintf(&b, "pgbench -s %d -c %d -j 2, %d s per run, %d round(s). Every target runs right after an ext4-directory run of its own (the load drifts during a run: a ratio is only fair within a pair); the ratio is the median of the per-pair ratios. btrfs targets are subvolumes in portvol's pool (a sparse image on the same disk, loop device with direct I/O, `-m single -d single`, mounted `noatime,%s` unless said).\n\n",
		c.scale, c.clients, c.seconds, c.rounds, btrfs.DefaultMountOptions)
	b.WriteString("| where the data directory lives | tps (median) | its ext4-directory runs (median) | ratio |\n|---|--:|--:|--:|\n")
	for _, t := range targets {
		xs := r.tps[t.key]
		if len(xs) == 0 {
			continue
		}
		var ratios []float64
		for i, x := range xs {
			if b := r.base[t.key]; i < len(b) && b[i] > 0 {
				ratios = append(ratios, x/b[i])
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f |\n", t.name, median(xs), median(r.base[t.key]), median(ratios))
	}
	if len(r.stall) > 0 {
		fmt.Fprintf(&b, "\nPause a snapshot imposes (target `%s`, pgbench %d s with per-transaction latency logs, a read-only snapshot every 2 s — Freeze then KeepBase, as the periodic snapshot does — against the same run without snapshots):\n\n", stallTarget, c.stallSeconds)
		b.WriteString("| run | tps | transactions | max latency | p99.9 | > 50 ms | slowest overlapping a snapshot | snapshots | Freeze median / max | KeepBase max |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range r.stall {
			run := "no snapshots"
			if s.Snapshots {
				run = "snapshot every 2 s"
			}
			fmt.Fprintf(&b, "| %s | %.0f | %d | %.1f ms | %.1f ms | %d | %s | %d | %s | %s |\n", run, s.TPS, s.Txns, s.MaxMs, s.P999Ms, s.Over50,
				dash(s.Snapshots, fmt.Sprintf("%.1f ms", s.OverlapMaxMs)), s.Freezes,
				dash(s.Snapshots, fmt.Sprintf("%.1f / %.1f ms", s.FreezeMedMs, s.FreezeMaxMs)), dash(s.Snapshots, fmt.Sprintf("%.1f ms", s.KeepMaxMs)))
		}
	}
	fmt.Fprintf(&b, "\nReproduce: `make bench-volfs BENCH_VOLFS_FLAGS='-rounds %d -seconds %d'`.\n<!-- /bench:volfs -->", c.rounds, c.seconds)
	old, err := os.ReadFile(c.out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, "<!-- bench:volfs -->"), strings.Index(s, "<!-- /bench:volfs -->")
	if i >= 0 && j > i {
		s = s[:i] + b.String() + s[j+len("<!-- /bench:volfs -->"):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + b.String() + "\n"
	}
	return os.WriteFile(c.out, []byte(s), 0o644)
}

func dash(ok bool, s string) string {
	if !ok {
		return "–"
	}
	return s
}

func minf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func pgVersion() string {
	out, err := exec.Command(pgBin+"/postgres", "--version").Output()
	if err != nil {
		return "PostgreSQL 15"
	}
	return strings.TrimSpace(string(out))
}
