package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
	"github.com/portvol/portvol/snapshot"
)

// Export into a btrfs subvolume keeps DST_DIR a subvolume, and when it
// provably holds an earlier export (snapshot.Repo.Holds) it restores in
// place, so that the export costs what changed:
//
//  1. a writable snapshot of DST_DIR beside it (".DST.portvol-export-…";
//     any such entry is a leftover of an interrupted export and is
//     deleted first);
//  2. the proof, on that frozen snapshot: the stat cache names the
//     snapshot DST_DIR holds, and nothing changed since. Without it the
//     snapshot is deleted and a new, empty subvolume takes its place, into
//     which the whole tree is restored (reusing DST_DIR's data where the
//     stat cache or --previous allow, as the staging path does);
//  3. the restore into that subvolume, with its stat cache written to a
//     temporary file beside the real one; one syncfs;
//  4. the real stat cache removed, the subvolume and DST_DIR exchanged in
//     one rename (RENAME_EXCHANGE), the new stat cache renamed in;
//  5. the old subvolume, now at the other's name, deleted.
//
// A crash before 4 leaves DST_DIR and its stat cache untouched; after the
// exchange DST_DIR holds the new export whole, at worst without a stat
// cache (the next export then restores the whole tree). A DST_DIR that is
// not a subvolume takes the staging path of snapshot.Repo.Restore.

const (
	subvolInfix   = ".portvol-export-"
	methodInPlace = "in-place"
	methodStaging = "staging"
)

// subvolExport is an export into a btrfs subvolume prepared: next is the
// subvolume that is restored into and swapped in; prev, when set, is the
// snapshot next holds (a snapshot of dst), and the restore is in place.
type subvolExport struct {
	dst, next, prev string
}

// prepareSubvolume removes leftovers of interrupted exports into dst
// and, when dst is a btrfs subvolume, makes the subvolume to restore into:
// a snapshot of dst when it provably holds an earlier export, else a new
// one (why says why not in place). A nil result means dst is not a
// subvolume: take the staging path.
func prepareSubvolume(ctx context.Context, repo *snapshot.Repo, volume, dst, statCache, previous string) (x *subvolExport, why string, err error) {
	parent, base := filepath.Dir(dst), filepath.Base(dst)
	removeStaleSubvolumes(parent, base)
	if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
		return nil, "DST_DIR did not exist", nil
	}
	if ok, err := btrfs.IsSubvolume(dst); err != nil || !ok {
		return nil, "DST_DIR is not the root of a btrfs subvolume", nil
	}
	next := filepath.Join(parent, "."+base+subvolInfix+localcopy.RandomSuffix())
	why = "no --stat-cache: what DST_DIR holds cannot be proven"
	if statCache != "" {
		if err := btrfs.Snapshot(dst, next, false); err != nil {
			// A subvolume mounted at DST_DIR, or one this user may not
			// snapshot: the staging path says what to do, or works.
			return nil, "cannot snapshot DST_DIR beside it: " + err.Error(), nil
		}
		prev, err := repo.Holds(ctx, volume, next, statCache)
		if err == nil && previous != "" && previous != prev {
			err = fmt.Errorf("--previous names snapshot %s, the stat cache %s: %w", previous, prev, snapshot.ErrNotProven)
		}
		if err == nil {
			return &subvolExport{dst: dst, next: next, prev: prev}, "", nil
		}
		if derr := btrfs.DeleteSubvolume(next); derr != nil {
			return nil, "", errors.Join(err, derr)
		}
		if !errors.Is(err, snapshot.ErrNotProven) {
			return nil, "", err
		}
		why = "DST_DIR is not provably an unmodified export: " + err.Error()
	}
	if err := btrfs.CreateSubvolume(next); err != nil {
		return nil, why + "; cannot create a subvolume beside it: " + err.Error(), nil
	}
	return &subvolExport{dst: dst, next: next}, why, nil
}

// removeStaleSubvolumes deletes the subvolumes that interrupted exports
// into parent/base left. It is best effort: a leftover only takes space,
// and the next export tries again.
func removeStaleSubvolumes(parent, base string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "."+base+subvolInfix) {
			_ = btrfs.DeleteSubvolume(filepath.Join(parent, e.Name()))
		}
	}
}

// run restores snapshot id into x.next and swaps it in. On an error
// before the exchange, dst and the stat cache are as they were.
func (x *subvolExport) run(ctx context.Context, repo *snapshot.Repo, volume, id, statCache, previous string, progress func(snapshot.Progress)) error {
	newCache := ""
	if statCache != "" {
		newCache = statCache + subvolInfix + "new"
	}
	abort := func(err error) error {
		if newCache != "" {
			_ = os.Remove(newCache)
		}
		if derr := btrfs.DeleteSubvolume(x.next); derr != nil {
			return fmt.Errorf("%w (and deleting the unfinished copy %s failed: %w; the next export removes it)", err, x.next, derr)
		}
		return err
	}
	opts := snapshot.RestoreOptions{InPlace: true, Previous: x.prev, StatCache: newCache, Progress: progress}
	if x.prev == "" {
		opts = snapshot.RestoreOptions{Into: true, ReuseDir: x.dst, Previous: previous, StatCache: newCache, Progress: progress}
		// Restore reads the stat cache to reuse DST_DIR's data and then
		// replaces it: give it a copy.
		if err := copyFile(statCache, newCache); err != nil {
			return abort(err)
		}
	}
	if err := repo.Restore(ctx, volume, id, x.next, opts); err != nil {
		return abort(err)
	}
	// The old cache goes before the exchange: a crash right after the
	// exchange must not leave it describing the new tree.
	if statCache != "" {
		if err := os.Remove(statCache); err != nil && !errors.Is(err, os.ErrNotExist) {
			return abort(fmt.Errorf("removing the stat cache %s: %w", statCache, err))
		}
		if err := durable.SyncDir(filepath.Dir(statCache)); err != nil {
			return abort(err)
		}
	}
	if err := localcopy.SwapIn(x.next, x.dst); err != nil {
		return abort(err)
	}
	// x.next now holds the previous export.
	if statCache != "" {
		if err := os.Rename(newCache, statCache); err != nil {
			err = fmt.Errorf("snapshot %s restored, but installing the stat cache %s failed (the next export restores the whole tree): %w", id, statCache, err)
			return restoredButError{errors.Join(err, btrfs.DeleteSubvolume(x.next))}
		}
		if err := durable.SyncDir(filepath.Dir(statCache)); err != nil {
			return restoredButError{fmt.Errorf("snapshot %s restored, but syncing the stat cache's directory failed: %w", id, err)}
		}
	}
	if err := btrfs.DeleteSubvolume(x.next); err != nil {
		return restoredButError{fmt.Errorf("snapshot %s restored, but deleting the previous copy %s failed (the next export into %s deletes it): %w", id, x.next, x.dst, err)}
	}
	return nil
}

// copyFile copies src to dst (absent src: nothing to do).
func copyFile(src, dst string) error {
	if src == "" {
		return nil
	}
	data, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

// restoredButError: DST_DIR holds the new export, and a step after the
// exchange failed.
type restoredButError struct{ error }

func (e restoredButError) Unwrap() error { return e.error }
