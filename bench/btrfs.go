package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
)

// benchPool is the btrfs pool of the pg-btrfs workload: a sparse image
// under the work directory on a loop device (as bench/pages does), whose
// subvolume "pgdata" holds the data directory every tool reads, and
// where portvol's --base snapshots are kept (bases/, same filesystem).
type benchPool struct {
	c *btrfs.Copies
}

const pgVolume = "pgdata"

// openPool opens the pool when the pg-btrfs workload runs: asked for, or
// -btrfs auto with the pg workload and btrfs usable (then pg-btrfs is
// added after pg). nil without it.
func (b *bench) openPool(ctx context.Context) (*benchPool, error) {
	ws := strings.Split(b.c.workloads, ",")
	want := slices.Contains(ws, "pg-btrfs")
	switch b.c.btrfs {
	case "off":
		if want {
			return nil, fmt.Errorf("workload pg-btrfs with -btrfs off")
		}
		return nil, nil
	case "on":
		want = want || slices.Contains(ws, "pg")
	case "auto":
		if !want && slices.Contains(ws, "pg") && os.Geteuid() == 0 && btrfs.Available() == nil {
			want = true
		}
	default:
		return nil, fmt.Errorf("-btrfs %q: want auto, on or off", b.c.btrfs)
	}
	if !want {
		return nil, nil
	}
	if !slices.Contains(ws, "pg-btrfs") {
		i := slices.Index(ws, "pg")
		ws = slices.Insert(ws, i+1, "pg-btrfs")
		b.c.workloads = strings.Join(ws, ",")
	}
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: filepath.Join(b.c.work, "btrfs"), PoolSize: 8 << 30, ForcePool: true})
	if err != nil {
		return nil, fmt.Errorf("the pg-btrfs workload's pool (-btrfs off to skip it): %w", err)
	}
	b.pool = &benchPool{c: c}
	return b.pool, nil
}

func (p *benchPool) bases() string { return filepath.Join(p.c.Root(), "bases") }

// fresh deletes the last run's data subvolume and bases and returns a
// new, empty data subvolume owned and moded as base (nodatacow, as
// portvol makes its database volumes).
func (p *benchPool) fresh(ctx context.Context, base string) (string, error) {
	if err := p.clear(ctx); err != nil {
		return "", err
	}
	if err := p.c.Create(ctx, pgVolume, localcopy.CreateOptions{NoCOW: true}); err != nil {
		return "", err
	}
	if err := os.MkdirAll(p.bases(), 0o755); err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(base, &st); err != nil {
		return "", err
	}
	d := p.c.Path(pgVolume)
	if err := os.Chown(d, int(st.Uid), int(st.Gid)); err != nil {
		return "", err
	}
	return d, os.Chmod(d, os.FileMode(st.Mode&0o7777))
}

func (p *benchPool) clear(ctx context.Context) error {
	es, _ := os.ReadDir(p.bases())
	for _, e := range es {
		if err := btrfs.DeleteSubvolume(filepath.Join(p.bases(), e.Name())); err != nil {
			return err
		}
	}
	if ok, err := p.c.Exists(ctx, pgVolume); err != nil || !ok {
		return err
	}
	return p.c.Remove(ctx, pgVolume)
}

// setBases gives each portvol tool its --base path under the pool's
// bases directory (dir "" for none).
func (p *benchPool) setBases(tools []tool, on bool) {
	for _, t := range tools {
		if pt, ok := t.(*portvolTool); ok {
			pt.base = ""
			if on {
				pt.base = filepath.Join(p.bases(), strings.NewReplacer(" ", "", "(", "", ")", "").Replace(pt.Name()))
			}
		}
	}
}

func (p *benchPool) close() {
	ctx := context.Background()
	if err := p.clear(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench: clearing the btrfs pool:", err)
	}
	if err := p.c.Pool().Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: unmounting the btrfs pool:", err)
	}
}
