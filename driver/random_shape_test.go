package driver

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy/btrfs"
	"github.com/portvol/portvol/transfer"
)

// The shapes a randomized run picks per seed (rconfig's knobs), and the
// machinery they need: per-volume options (periodic snapshots,
// takeover=auto, standby hosts), hosts that keep their copies in a btrfs
// pool of their own, partitions (a host cut off the store for a while, so
// that its leases lapse and takeover=auto volumes are taken over), and
// the recorder of every lease write that lands, which the observer checks
// takeovers and standby copies against.

var randomBtrfs = flag.Int("random.btrfs", -1, "TestRandomDriver: hosts with a btrfs pool per run (-1: one, or two in one run of four, where btrfs and loop devices are available)")

// pickShape fills in the knobs of cfg for its seed: a few volumes, each
// snapshotting every second or not, with takeover=auto or not, with a
// standby host or not (at least two periodic, one auto, one standby);
// partitions; btrfs hosts (up to maxBtrfs).
func pickShape(cfg *rconfig, maxBtrfs int) {
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5a4e))
	cfg.volumes = 3 + rng.IntN(2)
	cfg.vopts = make([]map[string]string, cfg.volumes)
	periodic, auto, standby := rng.IntN(cfg.volumes), rng.IntN(cfg.volumes), rng.IntN(cfg.volumes)
	periodic2 := (periodic + 1 + rng.IntN(cfg.volumes-1)) % cfg.volumes
	for i := range cfg.vopts {
		o := map[string]string{}
		if i == periodic || i == periodic2 || rng.IntN(2) == 0 {
			o[OptSnapshotInterval] = "1s"
		}
		if i == auto || rng.IntN(3) == 0 {
			o[OptTakeover] = "auto"
		}
		if i == standby || rng.IntN(3) == 0 {
			hosts := []string{fmt.Sprintf("host%d", rng.IntN(cfg.hosts))}
			if rng.IntN(4) == 0 {
				hosts = append(hosts, fmt.Sprintf("host%d", rng.IntN(cfg.hosts)))
			}
			o[OptStandby] = strings.Join(hosts, ",")
		}
		cfg.vopts[i] = o
	}
	cfg.partitions = true
	switch {
	case *randomBtrfs >= 0:
		cfg.btrfs = min(*randomBtrfs, cfg.hosts)
	case maxBtrfs > 0:
		cfg.btrfs = 1
		if rng.IntN(4) == 0 {
			cfg.btrfs = 2
		}
	}
	cfg.btrfs = min(cfg.btrfs, maxBtrfs)
}

// shape describes cfg's knobs for the log.
func (cfg rconfig) shape() string {
	var vols []string
	for i, o := range cfg.vopts {
		vols = append(vols, fmt.Sprintf("v%d%v", i, o))
	}
	return fmt.Sprintf("%d hosts (%d on btrfs), partitions %v, volumes %s", cfg.hosts, cfg.btrfs, cfg.partitions, strings.Join(vols, " "))
}

// standbyOf reports whether vol names host h as a standby.
func (r *rrun) standbyOf(h *rhost, vol string) bool {
	for i, v := range r.vols {
		if v == vol && i < len(r.cfg.vopts) {
			for _, s := range strings.Split(r.cfg.vopts[i][OptStandby], ",") {
				if s == h.name {
					return true
				}
			}
		}
	}
	return false
}

func (r *rrun) anyStandby() bool {
	for _, o := range r.cfg.vopts {
		if o[OptStandby] != "" {
			return true
		}
	}
	return false
}

// openBtrfs gives h a btrfs pool of its own in its state directory, kept
// across its processes (as the kernel keeps it mounted) and unmounted at
// the end of the run.
func (h *rhost) openBtrfs() {
	c, err := btrfs.Open(context.Background(), btrfs.Options{StateDir: h.stateDir, PoolSize: 512 << 20, ForcePool: true})
	if err != nil {
		h.r.t.Fatalf("%s: opening a btrfs pool: %v", h.name, err)
	}
	h.copies = c
}

// keptDirs are the directories where h keeps copies of volumes: its
// data directories and what was moved aside beside them, in the state
// directory and, on a btrfs host, in its pool (not the read-only bases
// and frozen instants, whose names start with a dot).
func (h *rhost) keptDirs() []string {
	var dirs []string
	vols, _ := filepath.Glob(filepath.Join(h.stateDir, "volumes", "*", "*"))
	kept, _ := filepath.Glob(filepath.Join(h.stateDir, "kept", "*"))
	dirs = append(dirs, vols...)
	dirs = append(dirs, kept...)
	if h.copies != nil {
		pool, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(h.copies.Path("x"))), "*", "*"))
		for _, p := range pool {
			if !strings.HasPrefix(filepath.Base(p), ".") {
				dirs = append(dirs, p)
			}
		}
	}
	return dirs
}

// partition cuts h off the store for d (healed by a later step, a kill
// or the end of the steps).
func (r *rrun) partition(h *rhost, d time.Duration) {
	h.fs.Cut()
	h.cutUntil = time.Now().Add(d)
	r.obs.count("partitions")
}

// healPartitions ends the partitions that lasted their time (all with
// force).
func (r *rrun) healPartitions(force bool) {
	for _, h := range r.hosts {
		if !h.cutUntil.IsZero() && (force || time.Now().After(h.cutUntil)) {
			h.fs.Heal()
			h.cutUntil = time.Time{}
			r.logf("%s: partition healed", h.name)
		}
	}
}

// leaseRecorder sits between a host process's faults and the store: it
// tells the observer of every write of a volume's lease record that
// landed (also one whose answer the faults then lose), with when it was
// sent and answered.
type leaseRecorder struct {
	transfer.ObjectStore
	o    *robs
	host int
}

func (s *leaseRecorder) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	start := time.Now()
	etag, err := s.ObjectStore.PutIfAbsent(ctx, key, data)
	s.landed(key, data, err, start)
	return etag, err
}

func (s *leaseRecorder) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	start := time.Now()
	tag, err := s.ObjectStore.PutIfMatch(ctx, key, data, etag)
	s.landed(key, data, err, start)
	return tag, err
}

func (s *leaseRecorder) landed(key string, data []byte, err error, start time.Time) {
	if err != nil || !strings.HasPrefix(key, "volumes/") || !strings.HasSuffix(key, "/head.json") {
		return
	}
	rec, derr := lease.Decode(data)
	if derr != nil {
		return
	}
	s.o.leaseWritten(leaseWrite{host: s.host, vol: rec.Volume, rec: rec, start: start, end: time.Now()})
}

// countHook counts the driver's log lines the observer reports on.
type countHook struct{ o *robs }

func (countHook) Levels() []logrus.Level { return logrus.AllLevels }

func (c countHook) Fire(e *logrus.Entry) error {
	if e.Message == "standby: pulled the head snapshot" {
		c.o.count("standby refreshes")
	}
	return nil
}

// logger is a process's logger: discarded, but counted.
func (r *rrun) logger() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	l.AddHook(countHook{r.obs})
	return l
}

// btrfsHosts is how many btrfs hosts the runs may have: none where btrfs
// or loop devices are missing (said in the log; under CI=true the test
// fails instead: CI must run them).
func btrfsHosts(t interface {
	Logf(string, ...any)
}) int {
	if err := btrfs.Available(); err != nil {
		t.Logf("no btrfs hosts: %v", err)
		return 0
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Logf("no btrfs hosts: no loop devices: %v", err)
		return 0
	}
	return 2
}
