package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// target is what portvol (encrypted) must reach in one row: at most
// maxRestic times restic's time and, if maxTar > 0, maxTar times tar's.
type target struct{ maxRestic, maxTar float64 }

// The snapshot targets are issue 11's (initial ≤ 0.3, after pgbench and
// no-change ≤ 0.1 × restic); the cold restore's an earlier issue's.
var targets = map[string]target{
	opInitial:  {0.3, 1},
	opNoChange: {0.1, 0},
	opAfter:    {0.1, 0},
	opCold:     {0.5, 1},
}

const (
	toolEnc   = "portvol (encrypted)"
	toolPlain = "portvol (plain)"
	toolRes   = "restic"
	toolTar   = "tar | zstd | PUT"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat is the median of one field over the runs of one row and tool.
func (b *bench) stat(w, op, tool string, f func(measure) float64) (float64, bool) {
	var xs []float64
	for _, s := range b.samples {
		if s.Workload == w && s.Op == op && s.Tool == tool {
			xs = append(xs, f(s.M))
		}
	}
	return median(xs), len(xs) > 0
}

func wall(m measure) float64 { return m.Wall.Seconds() }
func rss(m measure) float64  { return float64(m.RSSKiB) / 1024 }

func (b *bench) rows() [][2]string {
	var rows [][2]string
	for _, w := range strings.Split(b.c.workloads, ",") {
		ops := []string{opInitial, opNoChange, opAfter, opCold, opOnto}
		if w == "random" {
			ops = []string{opInitial, opNoChange, opCold}
		}
		for _, op := range ops {
			rows = append(rows, [2]string{w, op})
		}
	}
	return rows
}

func (b *bench) workloadName(w string) string {
	switch w {
	case "pg":
		return fmt.Sprintf("PostgreSQL 15, pgbench -s %d (%s)", b.c.scale, gib(b.sizes[w]))
	case "pg-btrfs":
		return fmt.Sprintf("PostgreSQL 15, pgbench -s %d (%s), in a btrfs subvolume; portvol import --base", b.c.scale, gib(b.sizes[w]))
	case "random":
		return fmt.Sprintf("incompressible files (%s)", gib(b.sizes[w]))
	}
	return w
}

func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }

func secs(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	if v < 10 {
		return fmt.Sprintf("%.2f s", v)
	}
	return fmt.Sprintf("%.1f s", v)
}

// ratio is the median over the runs of tool a's time over tool b's in
// the same run: the tools of one run ran back to back, under the same
// load, which the other helpers' work on a shared machine varies.
func (b *bench) ratio(w, op, ta, tb string) (string, float64) {
	var xs []float64
	for run := 1; run <= b.c.runs; run++ {
		var va, vb float64
		for _, s := range b.samples {
			if s.Workload == w && s.Op == op && s.Run == run {
				switch s.Tool {
				case ta:
					va = wall(s.M)
				case tb:
					vb = wall(s.M)
				}
			}
		}
		if va > 0 && vb > 0 {
			xs = append(xs, va/vb)
		}
	}
	if len(xs) == 0 {
		return "–", 0
	}
	m := median(xs)
	return fmt.Sprintf("%.2f", m), m
}

// markdown renders the section between the markers.
func (b *bench) markdown(ctx context.Context) string {
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	p("## Snapshots: portvol vs restic vs tar | zstd | PUT\n\n")
	p("Wall-clock seconds, median of %d runs (lower is better), all against the same local versitygw "+
		"in the same run. Ratios are portvol (encrypted) over the other tool, the median of the per-run ratios "+
		"(one run's tools go back to back under the same load); restic always encrypts, so portvol (encrypted) "+
		"is the fair comparison. Targets: initial ≤ 0.3 × restic, after pgbench ≤ 0.1, "+
		"no-change ≤ 0.1, cold restore ≤ 0.5, and initial snapshot and cold restore no slower than tar.\n\n", b.c.runs)
	p("| workload | operation | portvol (encrypted) | portvol (plain) | restic | tar \\| zstd \\| PUT | portvol / restic | portvol / tar | target met | peak RSS MiB: portvol enc / restic / tar |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|---|--:|\n")
	var missed []string
	for _, row := range b.rows() {
		w, op := row[0], row[1]
		enc, okE := b.stat(w, op, toolEnc, wall)
		plain, okP := b.stat(w, op, toolPlain, wall)
		res, okR := b.stat(w, op, toolRes, wall)
		tar, okT := b.stat(w, op, toolTar, wall)
		rr, rrv := b.ratio(w, op, toolEnc, toolRes)
		rt, rtv := b.ratio(w, op, toolEnc, toolTar)
		met := "–"
		if tg, ok := targets[op]; ok {
			var parts []string
			good := rrv <= tg.maxRestic
			parts = append(parts, fmt.Sprintf("%s ≤ %.2g × restic", mark(good), tg.maxRestic))
			if !good {
				missed = append(missed, fmt.Sprintf("%s / %s: %s × restic (target %.2g)", w, op, rr, tg.maxRestic))
			}
			if tg.maxTar > 0 {
				good := rtv <= tg.maxTar
				parts = append(parts, fmt.Sprintf("%s ≤ tar", mark(good)))
				if !good {
					missed = append(missed, fmt.Sprintf("%s / %s: %s × tar (target ≤ 1)", w, op, rt))
				}
			}
			met = strings.Join(parts, ", ")
		}
		re, _ := b.stat(w, op, toolEnc, rss)
		rr2, _ := b.stat(w, op, toolRes, rss)
		rt2, _ := b.stat(w, op, toolTar, rss)
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f / %.0f |\n", b.workloadName(w), op,
			secs(enc, okE), secs(plain, okP), secs(res, okR), secs(tar, okT), rr, rt, met, re, rr2, rt2)
	}
	p("\n")
	if len(missed) == 0 {
		p("All targets met.\n\n")
	} else {
		p("Targets missed: %s.\n\n", strings.Join(missed, "; "))
	}
	if f := b.floorText(); f != "" {
		p("%s\n\n", f)
	}

	p("CPU seconds (median; user + system of the tool's own processes, the S3 server's not included):\n\n")
	p("| workload | operation | portvol (encrypted) | portvol (plain) | restic | tar \\| zstd \\| PUT |\n|---|---|--:|--:|--:|--:|\n")
	for _, row := range b.rows() {
		p("| %s | %s |", b.workloadName(row[0]), row[1])
		for _, t := range []string{toolEnc, toolPlain, toolRes, toolTar} {
			v, ok := b.stat(row[0], row[1], t, func(m measure) float64 { return m.CPU.Seconds() })
			p(" %s |", secs(v, ok))
		}
		p("\n")
	}
	p("\n")

	p("Stored after the initial snapshot (median, bytes in the bucket prefix):\n\n")
	p("| workload | portvol (encrypted) | portvol (plain) | restic | tar \\| zstd \\| PUT |\n|---|--:|--:|--:|--:|\n")
	for _, w := range strings.Split(b.c.workloads, ",") {
		p("| %s |", b.workloadName(w))
		for _, t := range []string{toolEnc, toolPlain, toolRes, toolTar} {
			var xs []float64
			for _, st := range b.stored {
				if st.Workload == w && st.Tool == t {
					xs = append(xs, float64(st.M.RSSKiB)*1024)
				}
			}
			p(" %.0f MiB |", median(xs)/(1<<20))
		}
		p("\n")
	}
	p("\n")

	p("### How it was measured\n\n")
	reproduce := "make bench"
	if b.c.runs != 3 || b.c.scale != 50 || b.c.pgbenchSeconds != 15 || b.c.randomMiB != 1024 {
		reproduce = fmt.Sprintf("make bench BENCH_FLAGS='-runs %d -scale %d -pgbench-seconds %d -random-mib %d'",
			b.c.runs, b.c.scale, b.c.pgbenchSeconds, b.c.randomMiB)
	}
	p("- Reproduce: `%s` as root (it installs `postgresql restic zstd` with apt-get if missing). "+
		"Raw log: `bench/work/bench.log`.\n", reproduce)
	p("- One %s (posix backend, data under `bench/work/s3` on the disk below) on 127.0.0.1; a fresh bucket "+
		"per run and a fresh repository per tool. The tools' order changes from run to run (a balanced Latin square: "+
		"no tool always follows the same one), and before every measured operation all writes are synced and the "+
		"machine idles for 1 s.\n", versitygwVersion(b.c.versitygw))
	p("- PostgreSQL workload: `initdb`, `pgbench -i -s %d`, server stopped cleanly (what the final snapshot at "+
		"unmount sees); each run starts from a `cp -a` of it. After the initial and no-change snapshots, "+
		"`pgbench -c 2 -j 2 -T %d` runs (tps per run: %s), the server stops, and every tool snapshots the same result.\n",
		b.c.scale, b.c.pgbenchSeconds, strings.Join(b.tps, ", "))
	if strings.Contains(b.c.workloads, "pg-btrfs") {
		p("- pg-btrfs: the same PostgreSQL workload with its data directory in a nodatacow btrfs subvolume of a " +
			"pool image under the work directory (on the disk below, through a loop device); pgbench runs there, restic " +
			"and tar read the subvolume as a directory, and portvol imports it with `--base` (a read-only snapshot " +
			"taken by each import, kept beside it in the pool as the base of the next, which reads only the extents " +
			"btrfs reports changed since). Restores go to the disk below, as in the pg rows.\n")
	}
	p("- Incompressible workload: %d MiB from a CSPRNG in files of 128 MiB.\n", b.c.randomMiB)
	if b.cold {
		p("- The page cache is dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every initial snapshot, " +
			"snapshot after pgbench and restore, for every tool; not before no-change snapshots.\n")
	} else {
		p("- The page cache could NOT be dropped (not root): caches were warm.\n")
	}
	p("- Restores are timed until `syncfs` on the target returns, for every tool (portvol syncs by itself, the others do not). " +
		"Cold restore: empty target and no local state (restic gets an empty cache directory). Restore onto the previous " +
		"copy: the target holds the pre-pgbench snapshot, restored by the same tool; portvol reuses it through the stat " +
		"cache its earlier export wrote, restic 0.14 and tar rewrite every file.\n")
	p("- portvol runs the CLI (`portvol init` once, then `portvol import` / `export` against `s3://…`), with a `--stat-cache` file as the plugin keeps one; " +
		"each import also creates the volume record and takes, publishes and releases the lease. " +
		"restic: `restic init --repository-version 2` (compression auto), `restic backup .`, `restic restore ID --target`. " +
		"tar: `tar -c . | zstd -1 -T0 | PUT` (minio-go streaming multipart, 16 MiB parts, 4 in flight) and " +
		"`GET | zstd -d | tar -x`; tar has no usable incremental, so its no-change and after-pgbench rows re-upload everything.\n")
	p("- Peak RSS: the largest resident set of each process (wait4 `ru_maxrss`); for the tar pipeline, the sum over " +
		"tar, zstd and the uploader (an upper bound).\n\n")

	p("Machine: %s\n\n", b.machine(ctx))

	p("<details><summary>Every run (seconds)</summary>\n\n")
	p("| workload | operation | run | portvol (encrypted) | portvol (plain) | restic | tar \\| zstd \\| PUT |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, row := range b.rows() {
		for run := 1; run <= b.c.runs; run++ {
			p("| %s | %s | %d |", row[0], row[1], run)
			for _, t := range []string{toolEnc, toolPlain, toolRes, toolTar} {
				cell := "–"
				for _, s := range b.samples {
					if s.Workload == row[0] && s.Op == row[1] && s.Tool == t && s.Run == run {
						cell = fmt.Sprintf("%.2f (%.1f cpu-s)", s.M.Wall.Seconds(), s.M.CPU.Seconds())
					}
				}
				p(" %s |", cell)
			}
			p("\n")
		}
	}
	p("\n</details>\n\n")
	return s.String()
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// machine describes the host for the report.
func (b *bench) machine(ctx context.Context) string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	disk := strings.TrimSpace(version("findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", b.c.work))
	if src := strings.Fields(disk); len(src) > 0 {
		dev := filepath.Base(src[0])
		if rot, err := os.ReadFile("/sys/block/" + dev + "/queue/rotational"); err == nil {
			kind := "not rotational"
			if strings.TrimSpace(string(rot)) == "1" {
				kind = "reports rotational"
			}
			disk += ", " + kind
		}
	}
	kernel := version("uname", "-sr")
	gover := runtime.Version()
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		gover = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d × %s, %s RAM, disk %s; %s; %s; %s; %s; %s; %s; %s; measured %s (%s). "+
		"The machine was shared with other work: load average (1, 5, 15 min) %s at the start, %s at the end.",
		runtime.NumCPU(), cpu, mem, disk, kernel, gover, version("restic", "version"),
		versitygwVersion(b.c.versitygw), pgVersion(), strings.Trim(version("zstd", "--version"), "* "), version("tar", "--version"),
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), fmtElapsed(b.elapsed), b.loadBefore, b.loadAfter)
}

func fmtElapsed(d time.Duration) string {
	return fmt.Sprintf("%d min for all runs", int(d.Round(time.Minute).Minutes()))
}

// report prints the section and writes it into the output file.
func (b *bench) report(ctx context.Context) error {
	md := b.markdown(ctx)
	fmt.Println()
	fmt.Print(md)
	if b.c.out == "" {
		return nil
	}
	if err := replaceSection(b.c.out, md); err != nil {
		return err
	}
	fmt.Printf("written to %s\n", b.c.out)
	return nil
}

// versitygwVersion reads the module version from the binary's build
// information (its --version says "git" when built with go install).
func versitygwVersion(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/versity/versitygw" {
				return "versitygw " + f[2]
			}
		}
	}
	return "versitygw (version unknown)"
}

// floorText says what reading the changes costs on pg-btrfs, against the
// after-pgbench target.
func (b *bench) floorText() string {
	var exact, aligned []float64
	var eb, ab []float64
	for _, f := range b.floors {
		if f.Align == 0 {
			exact, eb = append(exact, f.Wall.Seconds()), append(eb, float64(f.Bytes))
		} else {
			aligned, ab = append(aligned, f.Wall.Seconds()), append(ab, float64(f.Bytes))
		}
	}
	if len(exact) == 0 || len(aligned) == 0 {
		return ""
	}
	res, ok := b.stat("pg-btrfs", opAfter, toolRes, wall)
	enc, okE := b.stat("pg-btrfs", opAfter, toolEnc, wall)
	if !ok || !okE {
		return ""
	}
	tg := targets[opAfter].maxRestic
	return fmt.Sprintf("Floor of the snapshot after pgbench on pg-btrfs, measured in each run just before the tools "+
		"(caches dropped): reading only the extents btrfs reports written since portvol's base (`btrfs subvolume find-new`; "+
		"%.0f MiB, every range advised to the kernel, then read in file order) took %.2f s; rounded out to 16 KiB blocks, as "+
		"portvol reads them (%.0f MiB), %.2f s (medians). %.2g × restic is %.2f s: reading what changed, and nothing else, "+
		"takes %.0f %% of it (floor / restic %.2f; portvol / floor %.2f, portvol / block-rounded floor %.2f).",
		median(eb)/(1<<20), median(exact), median(ab)/(1<<20), median(aligned), tg, tg*res,
		100*median(exact)/(tg*res), median(exact)/res, enc/median(exact), enc/median(aligned))
}
