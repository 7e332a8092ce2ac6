package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
)

type config struct {
	work, out              string
	rounds, scale, clients int
	seconds, stallSeconds  int
	only                   string
}

// target is one place the data directory lives.
type target struct {
	key, name string
	kind      string // "ext4", "ext4loop", "btrfs"
	mountOpts string // btrfs pool mount options
	create    localcopy.CreateOptions
	pgSet     []string // PostgreSQL settings
}

var targets = []target{
	{key: "ext4", name: "ext4 directory (the state directory's disk)", kind: "ext4"},
	{key: "ext4loop", name: "ext4 in a loop image (direct I/O)", kind: "ext4loop"},
	{key: "cow", name: "btrfs subvolume, copy-on-write", kind: "btrfs"},
	{key: "cow-fpw", name: "btrfs subvolume, copy-on-write, full_page_writes=off", kind: "btrfs", pgSet: []string{"full_page_writes=off"}},
	{key: "nocow", name: "btrfs subvolume, nodatacow", kind: "btrfs", create: localcopy.CreateOptions{NoCOW: true}},
	{key: "nocow-quota", name: "btrfs subvolume, nodatacow, size limit (quota groups on)", kind: "btrfs", create: localcopy.CreateOptions{NoCOW: true, SizeLimit: 20 << 30}},
	{key: "nocow-nodiscard", name: "btrfs subvolume, nodatacow, mounted without discard", kind: "btrfs", mountOpts: "space_cache=v2,nodiscard", create: localcopy.CreateOptions{NoCOW: true}},
	{key: "nocow-ssd", name: "btrfs subvolume, nodatacow, mounted ssd,commit=120", kind: "btrfs", mountOpts: "space_cache=v2,discard=async,ssd,commit=120", create: localcopy.CreateOptions{NoCOW: true}},
	{key: "nocow-odsync", name: "btrfs subvolume, nodatacow, wal_sync_method=open_datasync", kind: "btrfs", create: localcopy.CreateOptions{NoCOW: true}, pgSet: []string{"wal_sync_method=open_datasync"}},
}

// stallTarget is the default the stall measurement runs on.
const stallTarget = "nocow"

func main() {
	var c config
	flag.StringVar(&c.work, "work", "bench/work/volfs", "scratch directory on the real disk")
	flag.StringVar(&c.out, "out", "docs/benchmarks.md", "markdown file to write the table into (between its bench:volfs markers)")
	flag.IntVar(&c.rounds, "rounds", 1, "rounds (every target once per round; the table shows medians)")
	flag.IntVar(&c.scale, "scale", 20, "pgbench -i scale")
	flag.IntVar(&c.clients, "clients", 4, "pgbench clients")
	flag.IntVar(&c.seconds, "seconds", 25, "seconds of pgbench per target")
	flag.IntVar(&c.stallSeconds, "stall-seconds", 30, "seconds of pgbench for the snapshot pause measurement")
	flag.StringVar(&c.only, "only", "", "comma-separated target keys to run (default all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-volfs:", err)
		os.Exit(1)
	}
}

type result struct {
	tps   map[string][]float64 // per target, per round
	base  map[string][]float64 // the ext4 directory run paired with each
	stall []stallResult
	load  []float64
	start time.Time
}

func run(ctx context.Context, c config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (loop devices, mounts, PostgreSQL as postgres)")
	}
	for _, p := range []*string{&c.work, &c.out} {
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(c.work, "bench.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	p, err := newPG(c.work, logf)
	if err != nil {
		return err
	}
	tmpl := filepath.Join(c.work, "template")
	if _, err := os.Stat(filepath.Join(tmpl, "PG_VERSION")); err != nil {
		fmt.Printf("making the pgbench -s %d template\n", c.scale)
		_ = os.RemoveAll(tmpl)
		if err := p.initData(ctx, tmpl, c.scale); err != nil {
			return err
		}
	}
	e := &env{c: c, pg: p, tmpl: tmpl, log: logf}
	defer e.close()
	res := &result{tps: map[string][]float64{}, base: map[string][]float64{}, start: time.Now()}
	for r := 0; r < c.rounds; r++ {
		for _, t := range targets {
			if t.key == "ext4" || c.only != "" && !contains(strings.Split(c.only, ","), t.key) {
				continue
			}
			// Each target runs right after its own ext4 baseline: the
			// machine's load drifts, and a ratio is only fair within a pair.
			var pair [2]float64
			for i, tt := range []target{targetByKey("ext4"), t} {
				res.load = append(res.load, loadavg())
				tps, err := e.tps(ctx, tt)
				if err != nil {
					return fmt.Errorf("%s: %w", tt.key, err)
				}
				pair[i] = tps
			}
			fmt.Printf("round %d  %-60s %8.0f tps, ext4 directory just before %8.0f tps: %.2f\n", r+1, t.name, pair[1], pair[0], pair[1]/pair[0])
			res.tps[t.key] = append(res.tps[t.key], pair[1])
			res.base[t.key] = append(res.base[t.key], pair[0])
		}
		if c.only == "" || contains(strings.Split(c.only, ","), "stall") {
			for _, snaps := range []bool{false, true} {
				s, err := e.stall(ctx, targetByKey(stallTarget), snaps)
				if err != nil {
					return fmt.Errorf("stall: %w", err)
				}
				fmt.Printf("round %d  stall snapshots=%v: %s\n", r+1, snaps, s)
				res.stall = append(res.stall, s)
			}
		}
	}
	return writeReport(c, res)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func targetByKey(k string) target {
	for _, t := range targets {
		if t.key == k {
			return t
		}
	}
	panic("no target " + k)
}

func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}

// env holds the places the targets use.
type env struct {
	c      config
	pg     *pg
	tmpl   string
	log    *os.File
	copies *btrfs.Copies
	opts   string // mount options of copies' pool
}

func (e *env) close() {
	if e.copies != nil {
		_ = e.copies.Pool().Unmount()
	}
}

// pool returns the btrfs pool mounted with opts.
func (e *env) pool(ctx context.Context, opts string) (*btrfs.Copies, error) {
	if opts == "" {
		opts = btrfs.DefaultMountOptions
	}
	if e.copies != nil && e.opts == opts {
		return e.copies, nil
	}
	if e.copies != nil {
		if err := e.copies.Pool().Unmount(); err != nil {
			return nil, err
		}
		e.copies = nil
	}
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: filepath.Join(e.c.work, "state"), PoolSize: 8 << 30, ForcePool: true, MountOptions: opts})
	if err != nil {
		return nil, err
	}
	e.copies, e.opts = c, opts
	return c, nil
}

func (e *env) sh(ctx context.Context, args ...string) error {
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	c.Stdout, c.Stderr = e.log, e.log
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// prepare puts a copy of the template at a fresh place for t and
// returns the data directory and a cleanup.
func (e *env) prepare(ctx context.Context, t target) (string, func(), error) {
	switch t.kind {
	case "ext4":
		d := filepath.Join(e.c.work, "ext4", "data")
		_ = os.RemoveAll(filepath.Dir(d))
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return "", nil, err
		}
		if err := e.sh(ctx, "cp", "-a", e.tmpl, d); err != nil {
			return "", nil, err
		}
		return d, func() { _ = os.RemoveAll(filepath.Dir(d)) }, nil
	case "ext4loop":
		img, mnt := filepath.Join(e.c.work, "ext4.img"), filepath.Join(e.c.work, "ext4loop")
		_ = os.Remove(img)
		if err := e.sh(ctx, "truncate", "-s", "8G", img); err != nil {
			return "", nil, err
		}
		if err := e.sh(ctx, "mkfs.ext4", "-q", "-F", img); err != nil {
			return "", nil, err
		}
		out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=on", img).Output()
		if err != nil {
			return "", nil, fmt.Errorf("losetup: %w", err)
		}
		dev := strings.TrimSpace(string(out))
		_ = os.MkdirAll(mnt, 0o755)
		if err := e.sh(ctx, "mount", "-o", "noatime", dev, mnt); err != nil {
			_ = e.sh(ctx, "losetup", "-d", dev)
			return "", nil, err
		}
		cleanup := func() {
			_ = e.sh(context.Background(), "umount", mnt)
			_ = e.sh(context.Background(), "losetup", "-d", dev)
			_ = os.Remove(img)
		}
		d := filepath.Join(mnt, "data")
		if err := e.sh(ctx, "cp", "-a", e.tmpl, d); err != nil {
			cleanup()
			return "", nil, err
		}
		return d, cleanup, nil
	}
	c, err := e.pool(ctx, t.mountOpts)
	if err != nil {
		return "", nil, err
	}
	name := "bench-" + t.key
	_ = c.Remove(ctx, name)
	if err := c.Create(ctx, name, t.create); err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = c.Remove(context.Background(), name) }
	d := filepath.Join(c.Path(name), "pgdata")
	// cp -a into the subvolume: new files, so they inherit nodatacow.
	if err := e.sh(ctx, "cp", "-a", e.tmpl, d); err != nil {
		cleanup()
		return "", nil, err
	}
	if err := e.sh(ctx, "sync"); err != nil {
		cleanup()
		return "", nil, err
	}
	return d, cleanup, nil
}

func (e *env) tps(ctx context.Context, t target) (float64, error) {
	d, cleanup, err := e.prepare(ctx, t)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	if err := e.pg.start(ctx, d, t.pgSet); err != nil {
		return 0, err
	}
	tps, err := e.pg.pgbench(ctx, e.c.clients, e.c.seconds, "")
	if serr := e.pg.stop(ctx, d); err == nil {
		err = serr
	}
	return tps, err
}
