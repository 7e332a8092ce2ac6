package btrfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

// Copies keeps every volume's copy in a btrfs subvolume under root (the
// state directory when it is on btrfs, else the pool's mount point).
type Copies struct {
	root string
	pool *Pool // nil when root is the state directory itself

	quotaMu sync.Mutex // serialises enabling quotas
}

var (
	_ localcopy.Copies       = (*Copies)(nil)
	_ localcopy.ChangeFinder = (*Copies)(nil)
	_ localcopy.Converter    = (*Copies)(nil)
)

// Entry names in a volume's directory (<root>/volumes/<name>/).
const (
	dataName      = "data"      // the live subvolume
	frozenPrefix  = ".frozen-"  // read-only instants being read
	basePrefix    = ".base-"    // the kept base (one)
	restorePrefix = ".restore-" // restore targets
	createPrefix  = ".create-"  // a subvolume being made by Create or Convert
)

// Root is the directory holding the volumes (volumes/<name>/data).
func (c *Copies) Root() string { return c.root }

// Pool is the loop-attached pool, nil when the state directory is btrfs.
func (c *Copies) Pool() *Pool { return c.pool }

// Filesystem implements localcopy.Copies.
func (c *Copies) Filesystem() string { return localcopy.FilesystemBtrfs }

// Consistency implements localcopy.Copies.
func (c *Copies) Consistency() localcopy.Consistency { return localcopy.ConsistencyPointInTime }

func (c *Copies) volDir(name string) string { return filepath.Join(c.root, "volumes", name) }

// Path implements localcopy.Copies.
func (c *Copies) Path(name string) string { return filepath.Join(c.volDir(name), dataName) }

// Exists implements localcopy.Copies.
func (c *Copies) Exists(_ context.Context, name string) (bool, error) {
	if err := localcopy.CheckName(name); err != nil {
		return false, err
	}
	fi, err := os.Lstat(c.Path(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("volume %q: %w", name, err)
	case !fi.IsDir():
		return false, fmt.Errorf("volume %q: %s is not a directory", name, c.Path(name))
	}
	return true, nil
}

// Create implements localcopy.Copies: a new subvolume with its limit
// set, made under a temporary name and renamed into place, so a crash
// never leaves a copy without its limit.
func (c *Copies) Create(ctx context.Context, name string, opts localcopy.CreateOptions) error {
	if err := localcopy.CheckName(name); err != nil {
		return err
	}
	if ok, err := c.Exists(ctx, name); err != nil || ok {
		if ok {
			return fmt.Errorf("volume %q: %w", name, localcopy.ErrExists)
		}
		return err
	}
	tmp, err := c.newSubvolume(ctx, name, createPrefix, opts)
	if err != nil {
		return err
	}
	if err := localcopy.MoveNoReplace(tmp, c.Path(name)); err != nil {
		_ = deleteSubvolume(tmp)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("volume %q: %w", name, localcopy.ErrExists)
		}
		return fmt.Errorf("volume %q: %w", name, mapSpace(err))
	}
	return nil
}

// newSubvolume makes an empty subvolume <volDir>/<prefix><random> with
// opts applied; on error nothing is left.
func (c *Copies) newSubvolume(ctx context.Context, name, prefix string, opts localcopy.CreateOptions) (string, error) {
	if opts.SizeLimit < 0 {
		return "", fmt.Errorf("volume %q: negative size limit: %w", name, localcopy.ErrInvalid)
	}
	if err := c.checkSpace(); err != nil {
		return "", fmt.Errorf("volume %q: %w", name, err)
	}
	vd := c.volDir(name)
	if err := localcopy.MkdirDurable(vd); err != nil {
		return "", fmt.Errorf("volume %q: %w", name, mapSpace(err))
	}
	c.removeLeftovers(vd, createPrefix)
	p := filepath.Join(vd, prefix+localcopy.RandomSuffix())
	if err := createSubvolume(p); err != nil {
		return "", fmt.Errorf("volume %q: %w", name, mapSpace(err))
	}
	if err := c.apply(ctx, p, opts); err != nil {
		_ = deleteSubvolume(p)
		return "", fmt.Errorf("volume %q: %w", name, mapSpace(err))
	}
	return p, nil
}

// apply sets nodatacow and the size limit on the new subvolume p.
func (c *Copies) apply(_ context.Context, p string, opts localcopy.CreateOptions) error {
	if opts.NoCOW {
		if err := setNoCOW(p); err != nil {
			return err
		}
	}
	if opts.SizeLimit > 0 {
		if err := c.ensureQuota(); err != nil {
			return err
		}
		if err := setLimit(p, opts.SizeLimit); err != nil {
			return err
		}
	}
	return nil
}

// ensureQuota enables quota groups the first time a limit is set:
// filesystems without limited volumes do not pay for the accounting.
func (c *Copies) ensureQuota() error {
	c.quotaMu.Lock()
	defer c.quotaMu.Unlock()
	on, _, err := quotaStatus(c.root)
	if err != nil || on {
		return err
	}
	return enableQuota(c.root)
}

// checkSpace refuses new copies when the pool's own disk is nearly full
// (see Pool.Check).
func (c *Copies) checkSpace() error {
	if c.pool == nil {
		return nil
	}
	return c.pool.Check()
}

// removeLeftovers deletes the entries of vd with prefix (subvolumes or
// directories left by an interrupted operation). Best effort: what
// cannot be removed now is retried next time and does not affect the
// live copy.
func (c *Copies) removeLeftovers(vd, prefix string) {
	entries, _ := os.ReadDir(vd)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = deleteSubvolume(filepath.Join(vd, e.Name()))
		}
	}
}

// Usage implements localcopy.Copies: the quota group's referenced bytes
// when quotas are on (as of the last commit, at most 30 s old), else a
// walk of the tree.
func (c *Copies) Usage(ctx context.Context, name string) (localcopy.Usage, error) {
	if ok, err := c.Exists(ctx, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("volume %q: %w", name, localcopy.ErrNotFound)
		}
		return localcopy.Usage{}, err
	}
	p := c.Path(name)
	if on, inconsistent, err := quotaStatus(c.root); err == nil && on {
		treeID, _, err := subvolume(p)
		if err != nil {
			return localcopy.Usage{}, fmt.Errorf("volume %q: %w", name, err)
		}
		rfer, limit, ok, err := qgroupUsage(c.root, treeID)
		if err != nil {
			return localcopy.Usage{}, fmt.Errorf("volume %q: %w", name, err)
		}
		if ok {
			if inconsistent {
				// Deleting large snapshots can leave the numbers stale;
				// a rescan fixes them in the background.
				_ = rescanQuota(c.root)
			}
			return localcopy.Usage{Used: rfer, Limit: limit, Exact: !inconsistent}, nil
		}
	}
	n, err := localcopy.DiskUsage(ctx, p)
	if err != nil {
		return localcopy.Usage{}, fmt.Errorf("volume %q: %w", name, err)
	}
	return localcopy.Usage{Used: n, Exact: true}, nil
}

// Sync commits the filesystem (quota numbers and Usage follow commits).
func (c *Copies) Sync(context.Context) error { return syncFS(c.root) }

// Remove implements localcopy.Copies.
func (c *Copies) Remove(_ context.Context, name string) error {
	if err := localcopy.CheckName(name); err != nil {
		return err
	}
	vd := c.volDir(name)
	for _, prefix := range []string{restorePrefix, frozenPrefix, basePrefix, createPrefix} {
		c.removeLeftovers(vd, prefix)
	}
	if err := deleteSubvolume(c.Path(name)); err != nil {
		return fmt.Errorf("volume %q: removing its copy: %w", name, err)
	}
	for _, prefix := range []string{frozenPrefix, basePrefix} {
		if left := c.entries(vd, prefix); len(left) > 0 {
			return fmt.Errorf("volume %q: could not delete %s", name, left[0])
		}
	}
	if err := os.Remove(vd); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	return nil
}

// entries lists vd's entries with prefix, sorted.
func (c *Copies) entries(vd, prefix string) []string {
	es, _ := os.ReadDir(vd)
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Freeze implements localcopy.Copies: a read-only snapshot of the live
// subvolume. The snapshot ioctl flushes the subvolume's dirty data and
// commits, so everything written before Freeze is in it.
func (c *Copies) Freeze(ctx context.Context, name string) (localcopy.Frozen, error) {
	if ok, err := c.Exists(ctx, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("volume %q: %w", name, localcopy.ErrNotFound)
		}
		return localcopy.Frozen{}, err
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 10)
	p := filepath.Join(c.volDir(name), frozenPrefix+id)
	if err := snapshot(c.Path(name), p, true); err != nil {
		return localcopy.Frozen{}, fmt.Errorf("volume %q: freezing: %w", name, mapSpace(err))
	}
	_, gen, err := subvolume(p)
	if err != nil {
		_ = deleteSubvolume(p)
		return localcopy.Frozen{}, fmt.Errorf("volume %q: %w", name, err)
	}
	return localcopy.Frozen{Volume: name, Path: p, ID: id, Generation: gen}, nil
}

// checkFrozen makes sure f names one of its volume's instants.
func (c *Copies) checkFrozen(f localcopy.Frozen) error {
	if err := localcopy.CheckName(f.Volume); err != nil {
		return err
	}
	base := filepath.Base(f.Path)
	if f.ID == "" || filepath.Dir(f.Path) != c.volDir(f.Volume) ||
		(base != frozenPrefix+f.ID && base != basePrefix+f.ID) {
		return fmt.Errorf("volume %q: %s is not one of its instants: %w", f.Volume, f.Path, localcopy.ErrInvalid)
	}
	return nil
}

// Release implements localcopy.Copies.
func (c *Copies) Release(_ context.Context, f localcopy.Frozen) error {
	if err := c.checkFrozen(f); err != nil {
		return err
	}
	if strings.HasPrefix(filepath.Base(f.Path), basePrefix) {
		return fmt.Errorf("volume %q: instant %s is the base: drop it with DropBase: %w", f.Volume, f.ID, localcopy.ErrInvalid)
	}
	if err := deleteSubvolume(f.Path); err != nil {
		return fmt.Errorf("volume %q: %w", f.Volume, err)
	}
	return nil
}

// KeepBase implements localcopy.Copies: the instant is renamed to the
// base name; the previous base stays (Base returns the newest) until
// DropOlderBases, and any older one a crash left is deleted now.
func (c *Copies) KeepBase(_ context.Context, f localcopy.Frozen) error {
	if err := c.checkFrozen(f); err != nil {
		return err
	}
	vd := c.volDir(f.Volume)
	dst := filepath.Join(vd, basePrefix+f.ID)
	if f.Path != dst {
		if err := localcopy.MoveNoReplace(f.Path, dst); err != nil {
			return fmt.Errorf("volume %q: keeping instant %s as the base: %w", f.Volume, f.ID, err)
		}
	}
	return c.dropBasesBut(f.Volume, 2)
}

// DropOlderBases implements localcopy.Copies.
func (c *Copies) DropOlderBases(_ context.Context, name string) error {
	if err := localcopy.CheckName(name); err != nil {
		return err
	}
	return c.dropBasesBut(name, 1)
}

// dropBasesBut deletes name's bases but the newest keep (ids are times of
// one width: the names sort by age).
func (c *Copies) dropBasesBut(name string, keep int) error {
	vd := c.volDir(name)
	es := c.entries(vd, basePrefix)
	for _, e := range es[:max(len(es)-keep, 0)] {
		if err := deleteSubvolume(filepath.Join(vd, e)); err != nil {
			return fmt.Errorf("volume %q: dropping an earlier base: %w", name, err)
		}
	}
	return nil
}

// Base implements localcopy.Copies.
func (c *Copies) Base(_ context.Context, name string) (localcopy.Frozen, bool, error) {
	if err := localcopy.CheckName(name); err != nil {
		return localcopy.Frozen{}, false, err
	}
	vd := c.volDir(name)
	es := c.entries(vd, basePrefix)
	// Newest first: ids are nanosecond times of the same width for
	// centuries, so the string order is the time order.
	for i := len(es) - 1; i >= 0; i-- {
		p := filepath.Join(vd, es[i])
		_, gen, err := subvolume(p)
		if err != nil {
			continue
		}
		return localcopy.Frozen{Volume: name, Path: p, ID: strings.TrimPrefix(es[i], basePrefix), Generation: gen}, true, nil
	}
	return localcopy.Frozen{}, false, nil
}

// DropBase implements localcopy.Copies.
func (c *Copies) DropBase(_ context.Context, name string) error {
	if err := localcopy.CheckName(name); err != nil {
		return err
	}
	vd := c.volDir(name)
	for _, e := range c.entries(vd, basePrefix) {
		if err := deleteSubvolume(filepath.Join(vd, e)); err != nil {
			return fmt.Errorf("volume %q: dropping the base: %w", name, err)
		}
	}
	return nil
}

// RestoreTarget implements localcopy.Copies: a writable snapshot of the
// live subvolume (populated) or a new subvolume, with the volume's size
// limit and nodatacow setting.
func (c *Copies) RestoreTarget(ctx context.Context, name string, populated bool, opts localcopy.CreateOptions) (localcopy.Target, error) {
	if err := localcopy.CheckName(name); err != nil {
		return localcopy.Target{}, err
	}
	vd := c.volDir(name)
	c.removeLeftovers(vd, restorePrefix)
	live, err := isSubvolume(c.Path(name))
	if err != nil {
		return localcopy.Target{}, fmt.Errorf("volume %q: %w", name, err)
	}
	if !populated || !live {
		p, err := c.newSubvolume(ctx, name, restorePrefix, opts)
		if err != nil {
			return localcopy.Target{}, err
		}
		return localcopy.Target{Volume: name, Path: p}, nil
	}
	if err := c.checkSpace(); err != nil {
		return localcopy.Target{}, fmt.Errorf("volume %q: %w", name, err)
	}
	p := filepath.Join(vd, restorePrefix+localcopy.RandomSuffix())
	if err := snapshot(c.Path(name), p, false); err != nil {
		return localcopy.Target{}, fmt.Errorf("volume %q: restore target: %w", name, mapSpace(err))
	}
	// The snapshot has a quota group of its own, without the limit.
	if err := c.apply(ctx, p, localcopy.CreateOptions{SizeLimit: opts.SizeLimit}); err != nil {
		_ = deleteSubvolume(p)
		return localcopy.Target{}, fmt.Errorf("volume %q: %w", name, err)
	}
	return localcopy.Target{Volume: name, Path: p, Populated: true}, nil
}

func (c *Copies) checkTarget(t localcopy.Target) error {
	if err := localcopy.CheckName(t.Volume); err != nil {
		return err
	}
	if filepath.Dir(t.Path) != c.volDir(t.Volume) || !strings.HasPrefix(filepath.Base(t.Path), restorePrefix) {
		return fmt.Errorf("volume %q: %s is not one of its restore targets: %w", t.Volume, t.Path, localcopy.ErrInvalid)
	}
	return nil
}

// CommitRestore implements localcopy.Copies: the target's data is
// committed (syncfs), then exchanged with the live subvolume in one
// rename; the previous copy, now at the target's name, is deleted.
func (c *Copies) CommitRestore(_ context.Context, t localcopy.Target) error {
	if err := c.checkTarget(t); err != nil {
		return err
	}
	if err := syncFS(t.Path); err != nil {
		return fmt.Errorf("volume %q: %w", t.Volume, err)
	}
	if err := localcopy.SwapIn(t.Path, c.Path(t.Volume)); err != nil {
		return fmt.Errorf("volume %q: %w", t.Volume, err)
	}
	if err := deleteSubvolume(t.Path); err != nil {
		return fmt.Errorf("volume %q: restored, but deleting the previous copy %s failed (the next restore retries): %w", t.Volume, t.Path, err)
	}
	return nil
}

// AbortRestore implements localcopy.Copies.
func (c *Copies) AbortRestore(_ context.Context, t localcopy.Target) error {
	if err := c.checkTarget(t); err != nil {
		return err
	}
	if err := deleteSubvolume(t.Path); err != nil {
		return fmt.Errorf("volume %q: deleting restore target: %w", t.Volume, err)
	}
	return nil
}

// MoveAside implements localcopy.Copies.
func (c *Copies) MoveAside(_ context.Context, name, aside string) (string, error) {
	if err := localcopy.CheckName(name); err != nil {
		return "", err
	}
	if err := localcopy.CheckName(aside); err != nil || aside == dataName {
		return "", fmt.Errorf("volume %q: aside name %q: %w", name, aside, localcopy.ErrInvalid)
	}
	dst := filepath.Join(c.volDir(name), aside)
	if err := localcopy.MoveNoReplace(c.Path(name), dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("volume %q: %w", name, localcopy.ErrNotFound)
		}
		return "", fmt.Errorf("volume %q: moving its copy aside: %w", name, err)
	}
	return dst, nil
}

// mapSpace turns the filesystem's ENOSPC/EDQUOT into the package's errors.
func mapSpace(err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w: the btrfs filesystem holding the volumes is full (grow the pool with --pool-size, or free space): %w", localcopy.ErrNoSpace, err)
	case errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%w: %w", localcopy.ErrQuota, err)
	}
	return err
}

// Probe checks that this process can use the filesystem: it creates a
// subvolume, snapshots it read-only and deletes both.
func (c *Copies) Probe(context.Context) error {
	dir := filepath.Join(c.root, "volumes")
	if err := localcopy.MkdirDurable(dir); err != nil {
		return fmt.Errorf("probe: %w", mapSpace(err))
	}
	sv := filepath.Join(dir, ".probe-"+localcopy.RandomSuffix())
	if err := createSubvolume(sv); err != nil {
		return fmt.Errorf("probe: %w", mapSpace(err))
	}
	snapErr := snapshot(sv, sv+"-ro", true)
	err := errors.Join(snapErr, deleteSubvolume(sv+"-ro"), deleteSubvolume(sv))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}
