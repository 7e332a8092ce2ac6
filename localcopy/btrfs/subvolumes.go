package btrfs

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

// rootReadOnly is BTRFS_ROOT_SUBVOL_RDONLY in a subvolume's flags.
const rootReadOnly = 1 << 0

// SubvolumeInfo is what the kernel records of a subvolume, for callers
// that work on subvolumes outside the pool (portvol import --base).
type SubvolumeInfo struct {
	// UUID is the subvolume's own; ParentUUID the UUID of the subvolume
	// it is a snapshot of (all zero when it is not a snapshot).
	UUID, ParentUUID string
	// FSID is the filesystem's UUID.
	FSID string
	// Generation is the creation transaction (otransid): for a read-only
	// snapshot, every extent in it has a generation ≤ Generation.
	Generation uint64
	// Changed is the last transaction that changed the subvolume's files
	// (ctransid): it stays put while a read-only snapshot is only kept
	// and renamed.
	Changed uint64
	// ReadOnly: the subvolume cannot be written.
	ReadOnly bool
}

// Inspect returns subvolume p's info; an error when p is not the root
// of a btrfs subvolume.
func Inspect(p string) (SubvolumeInfo, error) {
	ok, err := isSubvolume(p)
	if err != nil {
		return SubvolumeInfo{}, err
	}
	if !ok {
		return SubvolumeInfo{}, fmt.Errorf("%s is not a btrfs subvolume: %w", p, localcopy.ErrInvalid)
	}
	fd, err := openDir(p)
	if err != nil {
		return SubvolumeInfo{}, err
	}
	defer unix.Close(fd)
	s, err := getSubvolInfo(fd)
	if err != nil {
		return SubvolumeInfo{}, &os.PathError{Op: "subvolume info", Path: p, Err: err}
	}
	fsid, err := getFSID(fd)
	if err != nil {
		return SubvolumeInfo{}, &os.PathError{Op: "filesystem info", Path: p, Err: err}
	}
	u, pu := s.uuid(), s.parentUUID()
	info := SubvolumeInfo{
		UUID: hex.EncodeToString(u[:]), FSID: hex.EncodeToString(fsid[:]),
		Generation: s.otransid(), Changed: s.ctransid(), ReadOnly: s.flags()&rootReadOnly != 0,
	}
	if pu != [16]byte{} {
		info.ParentUUID = hex.EncodeToString(pu[:])
	}
	return info, nil
}

// NewChangeSource is ChangeSource for two read-only snapshots of one
// subvolume kept anywhere on one filesystem (not instants of the pool):
// base, from which the parent snapshot was read, and cur, taken later.
// It refuses pairs for which the answers could not hold: not read-only,
// not snapshots of the same subvolume, on different filesystems, or cur
// not newer than base. label names them in errors (the volume).
//
// As with ChangeSource, the caller must make sure the parent snapshot was
// read from base and that base has been kept unchanged since it was taken.
func NewChangeSource(ctx context.Context, label, base, cur string) (*ChangeSource, error) {
	bi, err := Inspect(base)
	if err != nil {
		return nil, err
	}
	ci, err := Inspect(cur)
	if err != nil {
		return nil, err
	}
	switch {
	case !bi.ReadOnly || !ci.ReadOnly:
		return nil, fmt.Errorf("changes from %s to %s: both must be read-only snapshots: %w", base, cur, localcopy.ErrInvalid)
	case bi.ParentUUID == "" || bi.ParentUUID != ci.ParentUUID:
		return nil, fmt.Errorf("changes from %s to %s: not snapshots of the same subvolume: %w", base, cur, localcopy.ErrInvalid)
	case bi.FSID != ci.FSID:
		return nil, fmt.Errorf("changes from %s to %s: not on the same filesystem: %w", base, cur, localcopy.ErrInvalid)
	case bi.Generation >= ci.Generation:
		return nil, fmt.Errorf("changes from %s (generation %d) to %s (generation %d): not older: %w", base, bi.Generation, cur, ci.Generation, localcopy.ErrInvalid)
	}
	b := localcopy.Frozen{Volume: label, Path: base, ID: filepath.Base(base), Generation: bi.Generation}
	c := localcopy.Frozen{Volume: label, Path: cur, ID: filepath.Base(cur), Generation: ci.Generation}
	list, err := findChanges(ctx, c, b.Generation)
	if err != nil {
		return nil, err
	}
	return newChangeSource(ctx, b, c, list)
}
