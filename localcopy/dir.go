package localcopy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir keeps every volume's copy in a plain directory: today's layout,
// <root>/volumes/<name>/data. It works on any filesystem and freezes
// nothing (ConsistencyFileByFile); it cannot limit sizes.
type Dir struct {
	root string
}

var _ Copies = (*Dir)(nil)

// NewDir returns the directory implementation rooted at root (the state
// directory).
func NewDir(root string) *Dir { return &Dir{root: root} }

const (
	dataName      = "data"
	restorePrefix = ".restore-"
)

// Filesystem implements Copies.
func (d *Dir) Filesystem() string { return FilesystemDirectory }

// Consistency implements Copies.
func (d *Dir) Consistency() Consistency { return ConsistencyFileByFile }

func (d *Dir) volDir(name string) string { return filepath.Join(d.root, "volumes", name) }

// Path implements Copies.
func (d *Dir) Path(name string) string { return filepath.Join(d.volDir(name), dataName) }

// Exists implements Copies.
func (d *Dir) Exists(_ context.Context, name string) (bool, error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	return isDir(d.Path(name))
}

func isDir(p string) (bool, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", p)
	}
	return true, nil
}

// Create implements Copies.
func (d *Dir) Create(_ context.Context, name string, opts CreateOptions) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if opts.SizeLimit > 0 {
		return fmt.Errorf("volume %q: a size limit needs btrfs (--volume-fs btrfs); directory volumes cannot be limited: %w", name, ErrUnsupported)
	}
	if err := MkdirDurable(d.volDir(name)); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := os.Mkdir(d.Path(name), 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("volume %q: %w", name, ErrExists)
		}
		return fmt.Errorf("volume %q: %w", name, err)
	}
	return SyncDir(d.volDir(name))
}

// Usage implements Copies: the allocated blocks of the tree, counted by
// walking it.
func (d *Dir) Usage(ctx context.Context, name string) (Usage, error) {
	if err := CheckName(name); err != nil {
		return Usage{}, err
	}
	n, err := DiskUsage(ctx, d.Path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{}, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return Usage{Used: n, Exact: err == nil}, err
}

// DiskUsage sums the allocated bytes of the files and directories under
// dir (each inode once), without following symlinks. Entries vanishing
// during the walk are skipped.
func DiskUsage(ctx context.Context, dir string) (int64, error) {
	if _, err := os.Lstat(dir); err != nil {
		return 0, err
	}
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Nlink > 1 && !e.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// Remove implements Copies.
func (d *Dir) Remove(_ context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	vd := d.volDir(name)
	d.removeRestoreTargets(vd)
	if err := os.RemoveAll(d.Path(name)); err != nil {
		return fmt.Errorf("volume %q: removing its copy: %w", name, err)
	}
	if err := os.Remove(vd); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	return nil
}

func (d *Dir) removeRestoreTargets(vd string) {
	entries, _ := os.ReadDir(vd)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), restorePrefix) {
			// Best effort: a leftover that cannot be removed now is
			// retried by the next restore and does not affect the copy.
			_ = os.RemoveAll(filepath.Join(vd, e.Name()))
		}
	}
}

// Freeze implements Copies: a directory cannot be frozen, so the instant
// is the live directory itself (Frozen.PointInTime is false).
func (d *Dir) Freeze(ctx context.Context, name string) (Frozen, error) {
	ok, err := d.Exists(ctx, name)
	if err != nil {
		return Frozen{}, err
	}
	if !ok {
		return Frozen{}, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	return Frozen{Volume: name, Path: d.Path(name)}, nil
}

// Release implements Copies (nothing to drop).
func (d *Dir) Release(context.Context, Frozen) error { return nil }

// KeepBase implements Copies: Dir keeps no base (Base reports none).
func (d *Dir) KeepBase(context.Context, Frozen) error { return nil }

// DropOlderBases implements Copies: Dir keeps no base.
func (d *Dir) DropOlderBases(context.Context, string) error { return nil }

// Base implements Copies: never one.
func (d *Dir) Base(context.Context, string) (Frozen, bool, error) { return Frozen{}, false, nil }

// DropBase implements Copies.
func (d *Dir) DropBase(context.Context, string) error { return nil }

// RestoreTarget implements Copies: always an empty directory beside the
// live copy (a directory cannot be cloned cheaply), so Populated is false.
func (d *Dir) RestoreTarget(_ context.Context, name string, _ bool, opts CreateOptions) (Target, error) {
	if err := CheckName(name); err != nil {
		return Target{}, err
	}
	if opts.SizeLimit > 0 {
		return Target{}, fmt.Errorf("volume %q: a size limit needs btrfs: %w", name, ErrUnsupported)
	}
	vd := d.volDir(name)
	if err := MkdirDurable(vd); err != nil {
		return Target{}, fmt.Errorf("volume %q: %w", name, err)
	}
	d.removeRestoreTargets(vd)
	p := filepath.Join(vd, restorePrefix+randomSuffix())
	if err := os.Mkdir(p, 0o755); err != nil {
		return Target{}, fmt.Errorf("volume %q: restore target: %w", name, err)
	}
	return Target{Volume: name, Path: p}, nil
}

// CommitRestore implements Copies.
func (d *Dir) CommitRestore(_ context.Context, t Target) error {
	if err := d.checkTarget(t); err != nil {
		return err
	}
	if err := SwapIn(t.Path, d.Path(t.Volume)); err != nil {
		return fmt.Errorf("volume %q: %w", t.Volume, err)
	}
	if err := os.RemoveAll(t.Path); err != nil {
		return fmt.Errorf("volume %q: restored, but removing the previous copy %s failed (the next restore retries): %w", t.Volume, t.Path, err)
	}
	return nil
}

// AbortRestore implements Copies.
func (d *Dir) AbortRestore(_ context.Context, t Target) error {
	if err := d.checkTarget(t); err != nil {
		return err
	}
	if err := os.RemoveAll(t.Path); err != nil {
		return fmt.Errorf("volume %q: removing restore target: %w", t.Volume, err)
	}
	return nil
}

func (d *Dir) checkTarget(t Target) error {
	if err := CheckName(t.Volume); err != nil {
		return err
	}
	if filepath.Dir(t.Path) != d.volDir(t.Volume) || !strings.HasPrefix(filepath.Base(t.Path), restorePrefix) {
		return fmt.Errorf("volume %q: %s is not one of its restore targets: %w", t.Volume, t.Path, ErrInvalid)
	}
	return nil
}

// MoveAside implements Copies.
func (d *Dir) MoveAside(_ context.Context, name, aside string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if err := CheckName(aside); err != nil || aside == dataName {
		return "", fmt.Errorf("volume %q: aside name %q: %w", name, aside, ErrInvalid)
	}
	dst := filepath.Join(d.volDir(name), aside)
	if err := MoveNoReplace(d.Path(name), dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("volume %q: %w", name, ErrNotFound)
		}
		return "", fmt.Errorf("volume %q: moving its copy aside: %w", name, err)
	}
	return dst, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// RandomSuffix is a random name part for temporary entries.
func RandomSuffix() string { return randomSuffix() }
