package localcopy

import (
	"context"
	"errors"
)

// Errors. Implementations wrap them with the volume's name and what to do.
var (
	// ErrNotFound: the volume has no local copy (or no such instant).
	ErrNotFound = errors.New("no local copy")
	// ErrExists: Create found a copy already there.
	ErrExists = errors.New("local copy exists")
	// ErrUnsupported: the implementation cannot do this (a size limit on
	// a directory volume, changes without generations).
	ErrUnsupported = errors.New("not supported by this volume filesystem")
	// ErrInvalid: a bad argument (size, name).
	ErrInvalid = errors.New("invalid argument")
	// ErrQuota: the volume's size limit is reached. Writers see EDQUOT.
	ErrQuota = errors.New("size limit reached")
	// ErrNoSpace: the filesystem holding the copies is full.
	ErrNoSpace = errors.New("no space left for volumes")
	// ErrUnavailable: the filesystem cannot be used on this host (no
	// btrfs in the kernel, no loop device, the pool cannot be mounted).
	ErrUnavailable = errors.New("volume filesystem unavailable")
)

// Consistency says what a snapshot read from a frozen instant is worth.
type Consistency string

const (
	// ConsistencyPointInTime: one instant of the whole volume, as a crash
	// at that instant would have left it.
	ConsistencyPointInTime Consistency = "point-in-time"
	// ConsistencyFileByFile: files read one after another from the live
	// copy while it may change; not a valid backup of a running database.
	ConsistencyFileByFile Consistency = "file-by-file"
)

// Filesystem names.
const (
	FilesystemBtrfs     = "btrfs"
	FilesystemDirectory = "directory"
)

// CreateOptions are Create's settings; the zero value is an unlimited copy.
type CreateOptions struct {
	// SizeLimit in bytes; 0 means none. Writers past it get EDQUOT
	// ("Disk quota exceeded"); other volumes are not affected.
	SizeLimit int64
	// NoCOW makes files created in the copy nodatacow (btrfs): overwrites
	// in place, no checksums. Frozen instants stay atomic (a block is
	// copied once after each freeze). Ignored by Dir.
	NoCOW bool
}

// Usage is the space a copy takes.
type Usage struct {
	// Used is the bytes the copy references on disk (allocated blocks,
	// not apparent file sizes; shared extents count in full).
	Used int64
	// Limit is the size limit (0: none).
	Limit int64
	// Exact is false when Used is an estimate (quota accounting being
	// rescanned, or counted by walking the tree).
	Exact bool
}

// Frozen is one instant of a volume's copy to read a snapshot from.
type Frozen struct {
	// Volume is the volume's name.
	Volume string
	// Path is the directory to read. For Dir it is the live directory.
	Path string
	// ID names the instant among the volume's instants ("" for Dir).
	ID string
	// Generation is the btrfs transaction of the instant: every extent in
	// it has a generation ≤ Generation, every later write a greater one.
	// 0 for Dir.
	Generation uint64
}

// PointInTime reports whether f is a real instant (not the live copy).
func (f Frozen) PointInTime() bool { return f.ID != "" }

// Target is where a restore writes before CommitRestore swaps it in.
type Target struct {
	Volume string
	// Path is the directory to restore into.
	Path string
	// Populated says Path starts as a writable clone of the live copy
	// (write only what differs); otherwise it starts empty.
	Populated bool
}

// Copies is where this host keeps the local copies of its volumes. Calls
// for one volume must not run concurrently (the driver holds the volume's
// lock); calls for different volumes may.
type Copies interface {
	// Filesystem is FilesystemBtrfs or FilesystemDirectory.
	Filesystem() string
	// Consistency is what a snapshot read from Freeze's instant is worth.
	Consistency() Consistency
	// Path is the live directory of name's copy, whether or not it exists.
	Path(name string) string
	// Exists reports whether name has a live copy.
	Exists(ctx context.Context, name string) (bool, error)
	// Create makes an empty live copy. ErrExists if there is one;
	// ErrUnsupported for a size limit the implementation cannot enforce.
	// On error nothing is left behind.
	Create(ctx context.Context, name string, opts CreateOptions) error
	// Usage measures name's live copy.
	Usage(ctx context.Context, name string) (Usage, error)
	// Remove deletes the live copy, its instants, its base and restore
	// leftovers. Copies moved aside are kept. No copy is not an error.
	Remove(ctx context.Context, name string) error

	// Freeze returns an instant of name's copy to read a snapshot from.
	// Release it, or make it the base, when done.
	Freeze(ctx context.Context, name string) (Frozen, error)
	// Release drops an instant that is not the base.
	Release(ctx context.Context, f Frozen) error
	// KeepBase makes f the base of its volume (the instant of the last
	// published snapshot), replacing the previous base. The previous base
	// may stay until DropOlderBases: deleting it can take a while (0.7 s
	// once for a 10 GB volume), and KeepBase runs before a final snapshot
	// is published, while the next host waits.
	KeepBase(ctx context.Context, f Frozen) error
	// DropOlderBases deletes every base but the newest, the ones KeepBase
	// left (none is not an error).
	DropOlderBases(ctx context.Context, name string) error
	// Base returns the kept base; ok is false when there is none.
	Base(ctx context.Context, name string) (f Frozen, ok bool, err error)
	// DropBase drops the base (no base is not an error).
	DropBase(ctx context.Context, name string) error

	// RestoreTarget prepares a place to restore name into: a writable
	// clone of the live copy when populated is asked and possible (see
	// Target.Populated), else an empty directory. opts are the volume's
	// (its size limit carries over to the restored copy). Stale targets
	// of interrupted restores are removed first.
	RestoreTarget(ctx context.Context, name string, populated bool, opts CreateOptions) (Target, error)
	// CommitRestore puts t in place of the live copy atomically and
	// deletes the previous copy: a crash leaves the old or the new copy
	// in place, never a mix. The live copy must not be mounted.
	CommitRestore(ctx context.Context, t Target) error
	// AbortRestore deletes an uncommitted target.
	AbortRestore(ctx context.Context, t Target) error

	// MoveAside renames the live copy to aside (a plain name such as
	// fenced-7-20261204T101500Z) beside it and returns its new path. A
	// container writing into it keeps writing there.
	MoveAside(ctx context.Context, name, aside string) (string, error)
}

// FileChange is what changed in one file between a base and a later
// instant.
type FileChange struct {
	// Inode is the file's inode number in the later instant.
	Inode uint64
	// Path is one path of the file, relative to the volume's root ("" if
	// the file has no name any more).
	Path string
	// Size is the file's size in the later instant.
	Size int64
	// Ranges are the byte ranges written since the base, sorted, merged.
	// Ranges cloned from other files (FICLONERANGE) keep their source's
	// generation and are not in it on btrfs: compare extent locations
	// (btrfs.ChangeSource does) when that matters.
	Ranges []Range
	// Holes are the ranges of [0, Size) that hold no data in the later
	// instant (punched or never written), sorted, merged. A hole punched
	// since the base shows here, not in Ranges.
	Holes []Range
}

// Range is a byte range of a file.
type Range struct {
	Off, Len int64
}

// ChangeFinder is implemented by copies whose instants carry generations.
type ChangeFinder interface {
	// Changes lists the files of cur with data written since base (both
	// instants of the same volume, base older). Files not listed hold the
	// same data at the same offsets as in base, provided base was kept
	// without interruption from its Freeze to cur's (KeepBase): this
	// holds for nodatacow files too, because a block shared with a kept
	// instant is copied on its first write. Deleted and renamed files
	// are not listed: compare the trees' names and inode numbers.
	Changes(ctx context.Context, base, cur Frozen) ([]FileChange, error)
}

// Converter is implemented by copies that can take over a directory
// volume made by Dir (or an older portvol).
type Converter interface {
	// Convert makes dir's content name's live copy (a subvolume), keeping
	// owners, modes, times, xattrs, hard links, holes. dir is removed
	// after the switch. The volume must not be mounted.
	Convert(ctx context.Context, name, dir string) error
}
