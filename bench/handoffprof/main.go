// Command handoffprof profiles the two halves of a handoff of a btrfs
// volume in-process, without Docker: host A's final snapshot of a
// database after a change (btrfs ChangeSource against the kept base), and
// host B's restores of it: cold (into a new subvolume) and pre-staged (in
// place into a writable snapshot of a copy holding the previous snapshot).
// It prints the wall-clock phases of each step and, with -cpuprofile,
// writes a CPU profile of each.
//
// Usage (as root, from the repository's root, under the team's lock):
//
//	flock /tmp/portvol-docker.lock go run ./bench/handoffprof -src PGDATA \
//	    -change 'CMD' [-s3 http://KEY:SECRET@127.0.0.1:PORT/bucket] [-cpuprofile DIR]
//
// -src is copied into the volume; -change runs with $VOL set to the
// volume's path after the first snapshot (for example a pgbench run
// against a PostgreSQL started on $VOL). Without -s3 the store is a
// local directory under -work.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"github.com/portvol/portvol/transfer/s3"
)

var (
	cpuProfile, transfers string
	runs                  int
)

func main() {
	work := flag.String("work", "bench/work/handoffprof", "scratch directory")
	src := flag.String("src", "", "directory to copy into the volume (a stopped PostgreSQL data directory)")
	change := flag.String("change", "", "shell command run with $VOL after the first snapshot")
	s3url := flag.String("s3", "", "http://KEY:SECRET@HOST:PORT/BUCKET of an S3 server (default: a local directory store)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write CPU profiles of the timed steps into this directory")
	drop := flag.Bool("drop", false, "drop the page cache before each timed step")
	flag.IntVar(&runs, "runs", 1, "restores of each kind (cold, pre-staged)")
	flag.StringVar(&transfers, "transfers", "0", "comma-separated snapshot.Options.Transfers of the restores, alternated within each run (0: the default)")
	flag.Parse()
	if err := run(context.Background(), *work, *src, *change, *s3url, *drop); err != nil {
		fmt.Fprintln(os.Stderr, "handoffprof:", err)
		os.Exit(1)
	}
}

type phases struct {
	name, phase string
	start, last time.Time
	out         []string
}

func newPhases(name string) *phases {
	n := time.Now()
	return &phases{name: name, start: n, last: n}
}

func (p *phases) mark(step string) {
	now := time.Now()
	p.out = append(p.out, fmt.Sprintf("%s %.3fs", step, now.Sub(p.last).Seconds()))
	p.last = now
}

func (p *phases) progress(pr snapshot.Progress) {
	if p.phase != pr.Phase {
		if p.phase != "" {
			p.mark(p.phase)
		}
		p.phase = pr.Phase
	}
}

func (p *phases) print() {
	fmt.Printf("%-22s %.3fs: %s (load %s)\n", p.name, time.Since(p.start).Seconds(), strings.Join(p.out, ", "), loadAverage())
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func profiled(name string, drop bool, f func(p *phases) error) error {
	if drop {
		exec.Command("sync").Run()
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
		time.Sleep(300 * time.Millisecond)
	}
	p := newPhases(name)
	if cpuProfile != "" {
		os.MkdirAll(cpuProfile, 0o755)
		out, err := os.Create(filepath.Join(cpuProfile, name+".pprof"))
		if err != nil {
			return err
		}
		defer out.Close()
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	err := f(p)
	p.print()
	return err
}

func openStore(ctx context.Context, dir, s3url string) (transfer.ObjectStore, error) {
	if s3url == "" {
		return localdir.New(filepath.Join(dir, "store"))
	}
	u, err := url.Parse(s3url)
	if err != nil {
		return nil, err
	}
	sec, _ := u.User.Password()
	return s3.New(ctx, s3.Options{Endpoint: u.Scheme + "://" + u.Host, Region: "us-east-1", Bucket: strings.Trim(u.Path, "/"),
		AccessKey: u.User.Username(), SecretKey: transfer.Secret(sec), Addressing: s3.AddressingPath})
}

func run(ctx context.Context, work, src, change, s3url string, drop bool) (err error) {
	work, _ = filepath.Abs(work)
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: filepath.Join(work, "state"), PoolSize: 12 << 30, ForcePool: true})
	if err != nil {
		return err
	}
	defer func() {
		c.Remove(ctx, "a")
		c.Remove(ctx, "b")
		c.Remove(ctx, "c")
		if uerr := c.Pool().Unmount(); uerr != nil && err == nil {
			err = uerr
		}
		os.RemoveAll(work)
	}()
	nocow := localcopy.CreateOptions{NoCOW: true}
	for _, v := range []string{"a", "b", "c"} {
		if err := c.Create(ctx, v, nocow); err != nil {
			return err
		}
	}
	if out, err := exec.Command("cp", "-a", "--reflink=never", src+"/.", c.Path("a")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %w: %s", err, out)
	}
	st, err := openStore(ctx, work, s3url)
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := snapshot.Init(ctx, st, snapshot.InitOptions{Key: key}); err != nil {
		return err
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{Key: key})
	if err != nil {
		return err
	}
	var m1 *snapshot.Manifest
	err = profiled("initial-snapshot", drop, func(p *phases) error {
		f0, err := c.Freeze(ctx, "a")
		if err != nil {
			return err
		}
		p.mark("freeze")
		if m1, err = repo.Create(ctx, "v", f0.Path, snapshot.CreateOptions{Progress: p.progress}); err != nil {
			return err
		}
		p.mark(p.phase)
		return c.KeepBase(ctx, f0)
	})
	if err != nil {
		return err
	}
	fmt.Printf("initial: %d bytes, uploaded %d\n", m1.Stats.DataBytes, m1.Stats.UploadedBytes)
	// B's pre-staged copy: c holds m1 (restored, untimed).
	if err := restoreInto(ctx, c, repo, "c", m1.ID, "", nil); err != nil {
		return err
	}
	if change != "" {
		cmd := exec.Command("bash", "-c", change)
		cmd.Env = append(os.Environ(), "VOL="+c.Path("a"))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("change: %w", err)
		}
	}
	var m2 *snapshot.Manifest
	err = profiled("final-snapshot", drop, func(p *phases) error {
		base, _, err := c.Base(ctx, "a")
		if err != nil {
			return err
		}
		cur, err := c.Freeze(ctx, "a")
		if err != nil {
			return err
		}
		p.mark("freeze")
		cs, err := c.ChangeSource(ctx, base, cur)
		if err != nil {
			return err
		}
		defer cs.Close()
		p.mark("change-source")
		m2, err = repo.Create(ctx, "v", cur.Path, snapshot.CreateOptions{Parent: m1.ID, Changes: cs, Progress: p.progress})
		p.mark(p.phase)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("final: read %d, uploaded %d\n", m2.Stats.BytesRead, m2.Stats.UploadedBytes)
	for i := range runs {
		for _, tr := range strings.Split(transfers, ",") {
			var n int
			fmt.Sscan(tr, &n)
			rrepo, err := snapshot.Open(ctx, st, snapshot.Options{Key: key, Transfers: n})
			if err != nil {
				return err
			}
			err = profiled(fmt.Sprintf("cold-restore-%d-t%d", i+1, n), drop, func(p *phases) error {
				return restoreInto(ctx, c, rrepo, "b", m2.ID, "", p)
			})
			if err != nil {
				return err
			}
			err = profiled(fmt.Sprintf("prestaged-restore-%d-t%d", i+1, n), drop, func(p *phases) error {
				return restoreInto(ctx, c, rrepo, "c", m2.ID, m1.ID, p)
			})
			if err != nil {
				return err
			}
			// Back to the previous snapshot for the next pre-staged run.
			if err := restoreInto(ctx, c, rrepo, "c", m1.ID, m2.ID, nil); err != nil {
				return err
			}
		}
	}
	if err := restoreInto(ctx, c, repo, "c", m2.ID, m1.ID, nil); err != nil {
		return err
	}
	for _, v := range []string{"b", "c"} {
		if out, err := exec.Command("diff", "-r", "--no-dereference", c.Path("a"), c.Path(v)).CombinedOutput(); err != nil {
			return fmt.Errorf("restored copy %s differs from the volume: %w: %.2000s", v, err, out)
		}
	}
	fmt.Println("both restored copies equal the volume")
	return nil
}

// restoreInto restores id into copy name as the driver does: in place
// onto a writable snapshot when previous is set, into a new subvolume
// otherwise, then swapped in.
func restoreInto(ctx context.Context, c *btrfs.Copies, repo *snapshot.Repo, name, id, previous string, p *phases) error {
	t, err := c.RestoreTarget(ctx, name, previous != "", localcopy.CreateOptions{NoCOW: true})
	if err != nil {
		return err
	}
	opts := snapshot.RestoreOptions{Into: previous == "", InPlace: previous != "", Previous: previous}
	if p != nil {
		p.mark("target")
		opts.Progress = p.progress
	}
	if err := repo.Restore(ctx, "v", id, t.Path, opts); err != nil {
		c.AbortRestore(ctx, t)
		return err
	}
	if p != nil {
		p.mark(p.phase)
	}
	err = c.CommitRestore(ctx, t)
	if p != nil {
		p.mark("commit")
	}
	return err
}
