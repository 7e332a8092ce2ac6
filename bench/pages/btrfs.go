package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer/localdir"
)

var (
	btrfsMode, lockFile, cpuProfile string
	onlyBtrfs                       bool
)

// profiled runs f under a CPU profile written to cpuProfile/name.pprof
// when -cpuprofile is set.
func profiled(name string, f func() error) error {
	if cpuProfile == "" {
		return f()
	}
	if err := os.MkdirAll(cpuProfile, 0o755); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(cpuProfile, name+".pprof"))
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return f()
}

// phases prints how long each named step of a timed step took, with -cpuprofile.
type phases struct {
	name  string
	phase string // the engine's last reported phase
	last  time.Time
	out   []string
}

func newPhases(name string) *phases { return &phases{name: name, last: time.Now()} }

func (p *phases) mark(step string) {
	now := time.Now()
	p.out = append(p.out, fmt.Sprintf("%s %.3fs", step, now.Sub(p.last).Seconds()))
	p.last = now
}

func (p *phases) print() {
	if cpuProfile != "" {
		fmt.Printf("%s: %s (load %s)\n", p.name, strings.Join(p.out, ", "), loadAverage())
	}
}

func useBtrfs() bool {
	switch btrfsMode {
	case "on":
		return true
	case "off":
		return false
	}
	return btrfs.Available() == nil
}

// btrfsResult is one run's figures on btrfs, the driver's layout: the
// volume is a nodatacow subvolume in a pool image on the same disk, its
// snapshots are read from read-only instants, the instant of the last
// snapshot is kept as the base, and restores go into subvolumes.
type btrfsResult struct {
	initial            time.Duration
	snapSrc, snapNoSrc time.Duration // with the ChangeSource, and without (stats)
	readSrc, readNoSrc uint64
	upSrc, upNoSrc     uint64
	changedFiles       int
	cold, dd           time.Duration
	inPlace            time.Duration // writable snapshot, in-place restore, swap
	fetchedInPlace     uint64
	export             time.Duration // portvol export --force onto the previous export
	fetchedExport      uint64
}

func lock() (func(), error) {
	if lockFile == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func runBtrfs(ctx context.Context, work string, gib int, seed uint64) (res *btrfsResult, err error) {
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	res = &btrfsResult{}
	dir := filepath.Join(work, fmt.Sprintf("btrfs-%dgib", gib))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The image is sparse. At 3×size+4 GiB a 4 GiB run once ran out of
	// space in the export onto the previous export: deleted subvolumes
	// are freed by btrfs's cleaner later, and on a slow disk it lags.
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: filepath.Join(dir, "state"), PoolSize: int64(6*gib+4) << 30, ForcePool: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := c.Pool().Unmount(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	nocow := localcopy.CreateOptions{NoCOW: true}
	for _, v := range []string{"src", "dst", "dd", "exp"} {
		if err := c.Create(ctx, v, nocow); err != nil {
			return nil, err
		}
		defer c.Remove(ctx, v)
	}
	if err := makeVolume(c.Path("src"), gib); err != nil {
		return nil, err
	}
	ls, err := localdir.New(filepath.Join(dir, "store"))
	if err != nil {
		return nil, err
	}
	st := &counting{ObjectStore: ls}
	key := make([]byte, 32)
	rand.Read(key)
	if err := snapshot.Init(ctx, st, snapshot.InitOptions{Key: key}); err != nil {
		return nil, err
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{Key: key})
	if err != nil {
		return nil, err
	}

	// The first snapshot, from an instant that becomes the base.
	var m1 *snapshot.Manifest
	var f0 localcopy.Frozen
	res.initial, err = timed(func() (err error) {
		if f0, err = c.Freeze(ctx, "src"); err != nil {
			return err
		}
		m1, err = repo.Create(ctx, "v", f0.Path, snapshot.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := c.KeepBase(ctx, f0); err != nil {
		return nil, err
	}
	base, _, err := c.Base(ctx, "src")
	if err != nil {
		return nil, err
	}

	// Cold restore into a subvolume, against dd + sync into another.
	dst := filepath.Join(c.Path("dst"), "vol")
	res.cold, err = timed(func() error { return repo.Restore(ctx, "v", m1.ID, dst, snapshot.RestoreOptions{}) })
	if err != nil {
		return nil, err
	}
	if !onlyBtrfs {
		res.dd, err = timed(func() error { return ddCopy(c.Path("src"), c.Path("dd")) })
		if err != nil {
			return nil, err
		}
	}
	if err := c.Remove(ctx, "dd"); err != nil {
		return nil, err
	}

	ch, err := scatter(c.Path("src"), seed)
	if err != nil {
		return nil, err
	}
	_ = ch // the real ChangeSource finds them by itself
	var cur localcopy.Frozen
	var m2 *snapshot.Manifest
	st.put.Store(0)
	ph := newPhases(fmt.Sprintf("%d GiB btrfs snapshot of the change", gib))
	res.snapSrc, err = timed(func() (err error) {
		return profiled(fmt.Sprintf("snap-%dgib", gib), func() error {
			ph = newPhases(ph.name)
			if cur, err = c.Freeze(ctx, "src"); err != nil {
				return err
			}
			ph.mark("freeze")
			src, err := c.ChangeSource(ctx, base, cur)
			if err != nil {
				return err
			}
			defer src.Close()
			ph.mark("change search")
			res.changedFiles = src.Changed()
			m2, err = repo.Create(ctx, "v", cur.Path, snapshot.CreateOptions{Parent: m1.ID, Changes: src, Progress: ph.progress})
			ph.mark("create")
			return err
		})
	})
	ph.print()
	if err != nil {
		return nil, err
	}
	defer c.Release(ctx, cur)
	res.upSrc, res.readSrc = st.put.Swap(0), m2.Stats.BytesRead
	if err := deleteIndexes(ctx, st, "index/v/"+m1.ID+"/"); err != nil {
		return nil, err
	}
	var m3 *snapshot.Manifest
	res.snapNoSrc, err = timed(func() (err error) {
		m3, err = repo.Create(ctx, "v", cur.Path, snapshot.CreateOptions{Parent: m1.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	res.upNoSrc, res.readNoSrc = st.put.Swap(0), m3.Stats.BytesRead

	// Pre-staged: dst holds m1; a writable snapshot of it gets the delta
	// in place and is swapped in.
	st.get.Store(0)
	ph = newPhases(fmt.Sprintf("%d GiB btrfs pre-staged restore", gib))
	res.inPlace, err = timed(func() error {
		return profiled(fmt.Sprintf("restore-%dgib", gib), func() error {
			ph = newPhases(ph.name)
			t, err := c.RestoreTarget(ctx, "dst", true, nocow)
			if err != nil {
				return err
			}
			ph.mark("writable snapshot")
			if err := repo.Restore(ctx, "v", m2.ID, filepath.Join(t.Path, "vol"), snapshot.RestoreOptions{Previous: m1.ID, InPlace: true, Progress: ph.progress}); err != nil {
				c.AbortRestore(ctx, t)
				return err
			}
			ph.mark("restore")
			err = c.CommitRestore(ctx, t)
			ph.mark("swap")
			return err
		})
	})
	ph.print()
	if err != nil {
		return nil, err
	}
	res.fetchedInPlace = st.get.Load()
	if err := sameTree(cur.Path, dst); err != nil {
		return nil, fmt.Errorf("the in-place restore differs from the instant: %w", err)
	}

	// portvol export --force onto the previous export in a subvolume,
	// as a user runs it: it proves from the stat cache that the
	// subvolume holds m1 unmodified, then restores in place.
	if err := exportOnto(ctx, work, dir, key, c.Path("exp"), m1.ID, m2.ID, cur.Path, res); err != nil {
		return nil, err
	}
	return res, nil
}

// exportOnto exports snapshot m1 into the subvolume exp with the portvol
// command (untimed), then times exporting m2 onto it.
func exportOnto(ctx context.Context, work, dir string, key []byte, exp, m1, m2, want string, res *btrfsResult) error {
	bin, err := filepath.Abs(filepath.Join(work, "portvol"))
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/portvol").CombinedOutput(); err != nil {
		return fmt.Errorf("building portvol (run from the repository's root): %w\n%s", err, out)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	keyFile, cache := filepath.Join(abs, "key"), filepath.Join(abs, "export.statcache")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return err
	}
	export := func(id string) (method string, fetched uint64, err error) {
		out, err := exec.CommandContext(ctx, bin, "export", "--store", "file://"+filepath.Join(abs, "store"),
			"--encryption-key-file", keyFile, "--stat-cache", cache, "--force", "--snapshot", id, "--json", "v", exp).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			return "", 0, fmt.Errorf("portvol export: %w", err)
		}
		var r struct {
			Method           string `json:"method"`
			TransferredBytes uint64 `json:"transferred_bytes"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			return "", 0, fmt.Errorf("portvol export printed %q: %w", out, err)
		}
		return r.Method, r.TransferredBytes, nil
	}
	if _, _, err := export(m1); err != nil {
		return err
	}
	var method string
	res.export, err = timed(func() (err error) {
		method, res.fetchedExport, err = export(m2)
		return err
	})
	if err != nil {
		return err
	}
	if method != "in-place" {
		return fmt.Errorf("export --force onto the previous export took the %s path, not in place", method)
	}
	if err := sameTree(want, exp); err != nil {
		return fmt.Errorf("the export differs from the instant: %w", err)
	}
	return nil
}

// progress marks the engine's phase changes (Progress is called a few
// times a second, so a phase shorter than that may be missed).
func (p *phases) progress(pr snapshot.Progress) {
	if cpuProfile == "" {
		return
	}
	if p.phase != pr.Phase {
		if p.phase != "" {
			p.mark(p.phase)
		}
		p.phase = pr.Phase
	}
}
