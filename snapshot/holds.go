package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrNotProven: Holds could not prove that a directory holds a snapshot
// unmodified (no stat cache, or the directory differs from it). The
// wrapping error says what differs.
var ErrNotProven = errors.New("the directory is not provably an unmodified copy of a snapshot")

// Holds returns the snapshot of volume that dir provably holds,
// unmodified, so that it may be the Previous of an in-place restore: the
// stat cache at statCache names that snapshot and was written by the
// Restore or Create that last wrote dir; dir has exactly the snapshot's
// entries, with the same types; every regular file's size, mtime, ctime
// and inode are still the ones the cache recorded (any write, chmod,
// chown or xattr change since moves the ctime, which no one can set
// back), and not so recent that a later write in the same clock tick
// could hide; every other entry has the snapshot's mode, owner, link
// target, device number and xattrs. Otherwise the error wraps
// ErrNotProven and names the first difference.
//
// Entries that are not in the snapshot but vanish by themselves
// (sockets) are ignored, as Create ignores them. dir should not change
// while Holds reads it: call it on a frozen copy (a btrfs snapshot of
// dir) and restore into that copy.
func (r *Repo) Holds(ctx context.Context, volume, dir, statCache string) (string, error) {
	if err := checkVolume(volume); err != nil {
		return "", err
	}
	if statCache == "" {
		return "", fmt.Errorf("no stat cache given: %w", ErrNotProven)
	}
	if err := checkCacheOutside(statCache, dir); err != nil {
		return "", err
	}
	cache := loadStatCache(statCache)
	if cache == nil {
		return "", fmt.Errorf("stat cache %s is missing or unreadable: %w", statCache, ErrNotProven)
	}
	if !ValidSnapshotID(cache.Snapshot) {
		return "", fmt.Errorf("stat cache %s names no valid snapshot: %w", statCache, ErrNotProven)
	}
	m, err := r.loadManifest(ctx, volume, cache.Snapshot)
	if errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("snapshot %s, which the stat cache names, is not in the store: %w", cache.Snapshot, ErrNotProven)
	}
	if err != nil {
		return "", err
	}
	if err := r.loadContent(ctx, m); err != nil {
		return "", err
	}
	root, err := openDir(dir)
	if err != nil {
		return "", fmt.Errorf("volume %q: %w", volume, err)
	}
	defer unix.Close(root)
	t, err := walkTreeLive(ctx, root, false)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("reading %s: %w", dir, errors.Join(err, ErrNotProven))
	}
	if err := sameAs(t, m, cache); err != nil {
		return "", fmt.Errorf("%s differs from snapshot %s: %w", dir, m.ID, errors.Join(err, ErrNotProven))
	}
	return m.ID, nil
}

// sameAs compares a walk of a directory with manifest m, regular files by
// the stat cache.
func sameAs(t *tree, m *Manifest, cache *statCache) error {
	paths := m.Paths()
	at := make(map[string]int, len(paths))
	for i, p := range paths {
		at[p] = i
	}
	if len(t.nodes) != len(m.Nodes) {
		return fmt.Errorf("it has %d entries, the snapshot %d", len(t.nodes), len(m.Nodes))
	}
	for i := range t.nodes {
		got, p := &t.nodes[i], t.paths[i]
		j, ok := at[p]
		if !ok {
			return fmt.Errorf("%s is not in the snapshot", filepath.Clean(p))
		}
		want := &m.Nodes[j]
		if got.Type != want.Type {
			return fmt.Errorf("%s is a %s, the snapshot has a %s", p, got.Type, want.Type)
		}
		switch got.Type {
		case TypeHardlink:
			if t.paths[got.Link] != paths[want.Link] {
				return fmt.Errorf("%s links to %s, in the snapshot to %s", p, t.paths[got.Link], paths[want.Link])
			}
			continue
		case TypeFile:
			// The ctime covers size, content, mode, owner and xattrs.
			if !cache.unchanged(p, t.stat[i], defaultRacyWindow) {
				return fmt.Errorf("%s changed since the stat cache was written", p)
			}
			continue
		case TypeSymlink:
			if got.Target != want.Target {
				return fmt.Errorf("symlink %s points elsewhere", p)
			}
		case TypeCharDev, TypeBlockDev:
			if got.Rdev != want.Rdev {
				return fmt.Errorf("device %s has another device number", p)
			}
		}
		if got.Type != TypeSymlink && got.Mode != want.Mode || got.UID != want.UID || got.GID != want.GID {
			return fmt.Errorf("%s has another mode or owner", filepath.Clean(p))
		}
		if !xattrsEqual(got.Xattrs, want.Xattrs) {
			return fmt.Errorf("%s has other extended attributes", filepath.Clean(p))
		}
	}
	return nil
}
