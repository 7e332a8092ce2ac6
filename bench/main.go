package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	portvol, versitygw string
	work, out          string
	runs               int
	scale              int
	pgbenchSeconds     int
	randomMiB          int
	compression        string
	workloads          string
	fresh              bool
	btrfs              string // auto, on, off: the pg-btrfs workload
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "s3put" || os.Args[1] == "s3get") {
		if err := s3Main(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.StringVar(&c.portvol, "portvol", "build/portvol", "portvol binary (make build)")
	flag.StringVar(&c.versitygw, "versitygw", ".tools/bin/versitygw", "versitygw binary (make tools)")
	flag.StringVar(&c.work, "work", "bench/work", "scratch directory on the real disk (data sets, S3 data, restores)")
	flag.StringVar(&c.out, "out", "docs/benchmarks.md", "markdown file to write the table into (between its bench:snapshots markers); empty: print it only")
	flag.IntVar(&c.runs, "runs", 3, "runs per measurement; the table shows medians")
	flag.IntVar(&c.scale, "scale", 50, "pgbench -i scale of the PostgreSQL workload")
	flag.IntVar(&c.pgbenchSeconds, "pgbench-seconds", 15, "seconds of pgbench between the first snapshot and the one after")
	flag.IntVar(&c.randomMiB, "random-mib", 1024, "size of the incompressible workload (files of 128 MiB)")
	flag.StringVar(&c.compression, "compression", "", "portvol init --compression (s2 or zstd; empty: portvol's default)")
	flag.StringVar(&c.workloads, "workloads", "pg,random", "workloads to run: pg, random")
	flag.BoolVar(&c.fresh, "fresh", false, "rebuild the data sets even if bench/work holds them")
	flag.StringVar(&c.btrfs, "btrfs", "auto", "with the pg workload, also run pg-btrfs (the data directory in a btrfs subvolume, portvol import --base): auto (when btrfs and loop devices are usable), on, off")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if err := ensureTools(); err != nil {
		return err
	}
	for _, p := range []*string{&c.portvol, &c.versitygw, &c.work, &c.out} {
		if *p == "" {
			continue // -out "": print only
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	for _, bin := range []string{c.portvol, c.versitygw} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s missing: run make build tools first", bin)
		}
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(c.work, "bench.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	r := &runner{log: logf}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv, err := startS3(c.versitygw, filepath.Join(c.work, "s3"), logf)
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("versitygw on %s, data in %s; log in %s\n", srv.addr, srv.dataDir, logf.Name())

	e := &env{r: r, srv: srv, work: filepath.Join(c.work, "scratch"), self: self}
	tools := []tool{
		&portvolTool{env: e, bin: c.portvol, encrypted: true, compression: c.compression},
		&portvolTool{env: e, bin: c.portvol, compression: c.compression},
		&resticTool{env: e},
		&tarTool{env: e},
	}
	b := &bench{c: c, r: r, e: e, tools: tools, cold: true}

	pool, err := b.openPool(ctx)
	if err != nil {
		return err
	}
	if pool != nil {
		defer pool.close()
	}
	c.workloads = b.c.workloads
	var pg *postgres
	pgBase := filepath.Join(c.work, fmt.Sprintf("pg-base-s%d", c.scale))
	randomBase := filepath.Join(c.work, fmt.Sprintf("random-%dmib", c.randomMiB))
	for _, w := range strings.Split(c.workloads, ",") {
		switch w {
		case "pg", "pg-btrfs":
			if w == "pg-btrfs" && pool == nil {
				return fmt.Errorf("workload pg-btrfs needs btrfs (-btrfs on or auto, as root)")
			}
			if pg != nil {
				continue
			}
			if pg, err = newPostgres(r, c.work); err != nil {
				return err
			}
			if err := dataset(c.fresh, pgBase, func(dir string) error {
				fmt.Printf("making the PostgreSQL data set: initdb, pgbench -i -s %d\n", c.scale)
				return pg.create(ctx, dir, c.scale)
			}); err != nil {
				return err
			}
		case "random":
			if err := dataset(c.fresh, randomBase, func(dir string) error { return randomFiles(dir, c.randomMiB) }); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown workload %q: want pg, pg-btrfs or random", w)
		}
	}

	start := time.Now()
	b.loadBefore = loadAverage()
	for run := 1; run <= c.runs; run++ {
		bucket := fmt.Sprintf("bench-run%d-%s", run, randomHex(3))
		if err := srv.makeBucket(ctx, bucket); err != nil {
			return err
		}
		for _, w := range strings.Split(c.workloads, ",") {
			var err error
			switch w {
			case "pg":
				err = b.pgRun(ctx, run, bucket, pgBase, pg, "")
			case "pg-btrfs":
				err = b.pgRun(ctx, run, bucket, pgBase, pg, "btrfs")
			default:
				err = b.randomRun(ctx, run, bucket, randomBase)
			}
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", run, w, err)
			}
		}
		if err := srv.removeBucket(bucket); err != nil {
			return err
		}
	}
	b.elapsed = time.Since(start)
	b.loadAfter = loadAverage()
	b.sizes = map[string]int64{}
	if strings.Contains(c.workloads, "pg") {
		b.sizes["pg"] = treeSize(pgBase)
		b.sizes["pg-btrfs"] = b.sizes["pg"]
	}
	if strings.Contains(c.workloads, "random") {
		b.sizes["random"] = treeSize(randomBase)
	}
	return b.report(ctx)
}

// dataset makes dir with mk unless it exists (from an earlier run) and
// fresh is false. A half-made data set is removed first.
func dataset(fresh bool, dir string, mk func(string) error) error {
	done := dir + ".done"
	if _, err := os.Stat(done); err == nil && !fresh {
		return nil
	}
	os.Remove(done)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := mk(dir); err != nil {
		return err
	}
	return os.WriteFile(done, nil, 0o644)
}

// randomFiles writes mib MiB of incompressible data as files of 128 MiB.
func randomFiles(dir string, mib int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i*128 < mib; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("random-%02d.bin", i)))
		if err != nil {
			return err
		}
		for j := 0; j < min(128, mib-i*128); j++ {
			_, _ = rand.Read(buf)
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func treeSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// ensureTools installs the Debian packages the benchmark needs if any is
// missing (as root), or says what to install.
func ensureTools() error {
	need := map[string]string{"restic": "restic", "zstd": "zstd", "tar": "tar", "runuser": "util-linux",
		filepath.Join(pgBin, "pgbench"): "postgresql"}
	var missing []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing packages %s: apt-get install -y %s", strings.Join(missing, " "), strings.Join(missing, " "))
	}
	fmt.Printf("installing %s\n", strings.Join(missing, " "))
	c := exec.Command("apt-get", append([]string{"install", "-y"}, missing...)...)
	c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	return c.Run()
}

// sample is one measured operation of one tool in one run.
type sample struct {
	Workload, Op, Tool string
	Run                int
	M                  measure
}

type bench struct {
	c       config
	r       *runner
	e       *env
	tools   []tool
	cold    bool       // page cache dropped before cold operations
	pool    *benchPool // the pg-btrfs workload's, or nil
	samples []sample
	floors  []readFloor // pg-btrfs: reading what changed before the snapshot after pgbench
	stored  []sample    // M.RSSKiB holds stored KiB after the initial snapshot
	sizes   map[string]int64
	tps     []string
	elapsed time.Duration

	loadBefore, loadAfter string // /proc/loadavg: other work on a shared machine
}

// loadAverage is the 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// Operations, in table order.
const (
	opInitial  = "initial snapshot"
	opNoChange = "no-change snapshot"
	opAfter    = "snapshot after pgbench"
	opCold     = "cold restore"
	opOnto     = "restore onto the previous copy"
)

// williams is a balanced Latin square for four tools: over four runs
// every tool goes first once and follows every other tool once, so none
// always inherits the same predecessor's after-effects (writeback,
// discards of deleted restores, a busy S3 server).
var williams = [4][4]int{{0, 1, 3, 2}, {1, 2, 0, 3}, {2, 3, 1, 0}, {3, 0, 2, 1}}

// order is the tools' order in a run.
func (b *bench) order(run int) []tool {
	out := make([]tool, len(b.tools))
	for i, t := range williams[(run-1)%4] {
		out[i] = b.tools[t]
	}
	return out
}

// settle lets the previous operation's writes and deletions reach the
// disk before the next measurement starts.
func settle() {
	syscall.Sync()
	time.Sleep(time.Second)
}

func (b *bench) record(w, op string, t tool, run int, m measure) {
	b.samples = append(b.samples, sample{Workload: w, Op: op, Tool: t.Name(), Run: run, M: m})
	fmt.Printf("run %d  %-7s %-32s %-20s %7.2fs  %6.2f cpu-s  %5d MiB\n", run, w, op, t.Name(), m.Wall.Seconds(), m.CPU.Seconds(), m.RSSKiB/1024)
}

func (b *bench) drop() {
	if !dropCaches() {
		b.cold = false
	}
}

// snapshotAll snapshots dir with every tool and returns their IDs.
func (b *bench) snapshotAll(ctx context.Context, w, op string, run int, dir string, drop bool, ids map[string]string) error {
	for _, t := range b.order(run) {
		settle()
		if drop {
			b.drop()
		}
		m, id, err := t.Snapshot(ctx, dir)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", t.Name(), op, err)
		}
		ids[t.Name()] = id
		b.record(w, op, t, run, m)
		if op == opInitial {
			b.stored = append(b.stored, sample{Workload: w, Tool: t.Name(), Run: run, M: measure{RSSKiB: t.Stored() / 1024}})
		}
	}
	return nil
}

// restoreAll measures a cold restore of latest and, if prev is set, a
// restore of latest onto a copy of prev.
func (b *bench) restoreAll(ctx context.Context, w string, run int, latest, prev map[string]string) error {
	for _, t := range b.order(run) {
		dst := filepath.Join(b.c.work, "restore")
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		settle()
		b.drop()
		m, err := t.Restore(ctx, latest[t.Name()], dst, restoreCold)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", t.Name(), opCold, err)
		}
		b.record(w, opCold, t, run, m)
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if prev == nil {
			continue
		}
		if _, err := t.Restore(ctx, prev[t.Name()], dst, restorePrepare); err != nil {
			return fmt.Errorf("%s, restoring the previous copy: %w", t.Name(), err)
		}
		settle()
		b.drop()
		if m, err = t.Restore(ctx, latest[t.Name()], dst, restoreOnto); err != nil {
			return fmt.Errorf("%s, %s: %w", t.Name(), opOnto, err)
		}
		b.record(w, opOnto, t, run, m)
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) setup(ctx context.Context, bucket, w string) error {
	for _, t := range b.tools {
		prefix := w + "-" + strings.NewReplacer(" ", "", "(", "", ")", "", "|", "").Replace(t.Name())
		if err := t.Setup(ctx, bucket, prefix); err != nil {
			return fmt.Errorf("%s setup: %w", t.Name(), err)
		}
	}
	return nil
}

// pgRun is one run of the PostgreSQL workload; with fs "btrfs" (the
// pg-btrfs workload) the data directory is a subvolume and portvol
// imports with --base.
func (b *bench) pgRun(ctx context.Context, run int, bucket, base string, pg *postgres, fs string) error {
	w, data := "pg", filepath.Join(b.c.work, "pg-data")
	if fs == "btrfs" {
		var err error
		w = "pg-btrfs"
		if data, err = b.pool.fresh(ctx, base); err != nil {
			return err
		}
		defer b.pool.setBases(b.tools, false)
	} else if err := os.RemoveAll(data); err != nil {
		return err
	}
	// A copy per run: pgbench changes it, and every run starts alike.
	if _, err := b.r.must(ctx, "/", nil, "cp", "-a", base+"/.", data); err != nil {
		return err
	}
	if err := b.setup(ctx, bucket, w); err != nil {
		return err
	}
	if fs == "btrfs" {
		b.pool.setBases(b.tools, true)
	}
	initial, same, after := map[string]string{}, map[string]string{}, map[string]string{}
	if err := b.snapshotAll(ctx, w, opInitial, run, data, true, initial); err != nil {
		return err
	}
	if err := b.snapshotAll(ctx, w, opNoChange, run, data, false, same); err != nil {
		return err
	}
	tps, err := pg.bench(ctx, data, b.c.pgbenchSeconds)
	if err != nil {
		return fmt.Errorf("pgbench: %w", err)
	}
	b.tps = append(b.tps, tps)
	fmt.Printf("run %d  %s pgbench -c 2 -T %d: %s tps\n", run, w, b.c.pgbenchSeconds, tps)
	if fs == "btrfs" {
		if err := b.measureReadFloor(ctx, run, data); err != nil {
			return fmt.Errorf("the read floor after pgbench: %w", err)
		}
	}
	if err := b.snapshotAll(ctx, w, opAfter, run, data, true, after); err != nil {
		return err
	}
	if err := b.restoreAll(ctx, w, run, after, initial); err != nil {
		return err
	}
	if fs == "btrfs" {
		return nil // the next run's fresh, or close, deletes it
	}
	return os.RemoveAll(data)
}

func (b *bench) randomRun(ctx context.Context, run int, bucket, base string) error {
	if err := b.setup(ctx, bucket, "random"); err != nil {
		return err
	}
	initial, same := map[string]string{}, map[string]string{}
	if err := b.snapshotAll(ctx, "random", opInitial, run, base, true, initial); err != nil {
		return err
	}
	if err := b.snapshotAll(ctx, "random", opNoChange, run, base, false, same); err != nil {
		return err
	}
	return b.restoreAll(ctx, "random", run, initial, nil)
}

// version runs a program's version command and returns its first line.
func version(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// replaceSection puts section between the bench:snapshots markers of the
// file at path, creating the file or appending the markers as needed.
func replaceSection(path, section string) error {
	const begin, end = "<!-- bench:snapshots -->", "<!-- /bench:snapshots -->"
	block := begin + "\n" + section + end + "\n"
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		old = []byte("# Benchmarks\n\n")
	} else if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + strings.TrimPrefix(s[j+len(end):], "\n")
	default:
		if !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += block
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
