package btrfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
	pvsnap "github.com/portvol/portvol/snapshot"
)

// ChangeSource answers the snapshot engine's question — how does the
// file at this path differ from what the parent snapshot recorded there —
// from extent generations: base is the kept instant the parent snapshot
// was read from, cur the instant being read now (doc.go, "Instants and
// changes"). It is a snapshot.ChangeSource.
//
// A file is asked about by path and by its inode number in cur. The answer
// relies on the inode, so the path is looked up in base first: a file
// that is not the same inode there (renamed over, replaced, reached
// through a symlink or another subvolume) is read whole. For the same
// inode: not listed by Changes means the same bytes at the same offsets
// (Unchanged); listed means its newer extents plus the ranges that are a
// hole in cur and held data in base (a punched hole or a truncation
// leaves no newer extent item). Inode numbers reused after a delete are
// no risk: the new inode's item and extents are all newer than base, so
// it is listed with all its data.
//
// The caller must make sure that the parent snapshot was read from base
// and that base was kept from its Freeze on (localcopy.ChangeFinder);
// otherwise the answers are wrong without any error. Not safe for
// concurrent use (the snapshot engine asks from one goroutine). Close it
// when done.
type ChangeSource struct {
	ctx      context.Context
	base     localcopy.Frozen
	baseFD   int
	baseDev  uint64
	baseTree uint64
	curFD    int
	curTree  uint64
	changed  map[uint64]localcopy.FileChange
}

var _ pvsnap.ChangeSource = (*ChangeSource)(nil)

// The extent's offset inside its disk extent (btrfs_file_extent_item).
const feiExtOffset = 37

// ChangeSource finds the changes from base to cur (one tree search over
// the metadata written since base) and returns the source that answers
// the snapshot engine from them.
func (c *Copies) ChangeSource(ctx context.Context, base, cur localcopy.Frozen) (*ChangeSource, error) {
	list, err := c.Changes(ctx, base, cur)
	if err != nil {
		return nil, err
	}
	return newChangeSource(ctx, base, cur, list)
}

// newChangeSource opens base and cur for the answers from list, the
// changes between them.
func newChangeSource(ctx context.Context, base, cur localcopy.Frozen, list []localcopy.FileChange) (*ChangeSource, error) {
	s := &ChangeSource{ctx: ctx, base: base, baseFD: -1, curFD: -1, changed: make(map[uint64]localcopy.FileChange, len(list))}
	var st unix.Stat_t
	for _, x := range []struct {
		f    localcopy.Frozen
		fd   *int
		tree *uint64
	}{{base, &s.baseFD, &s.baseTree}, {cur, &s.curFD, &s.curTree}} {
		fd, err := openDir(x.f.Path)
		if err == nil {
			*x.fd = fd
			var info *subvolInfo
			if info, err = getSubvolInfo(fd); err == nil {
				*x.tree = info.treeID()
				err = unix.Fstat(fd, &st)
			}
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("volume %q: instant %s: %w", x.f.Volume, x.f.ID, err)
		}
	}
	if err := unix.Fstat(s.baseFD, &st); err != nil {
		s.Close()
		return nil, fmt.Errorf("volume %q: base instant %s: %w", base.Volume, base.ID, err)
	}
	s.baseDev = st.Dev
	for _, fc := range list {
		s.changed[fc.Inode] = fc
	}
	return s, nil
}

// SnapshotChanges is ChangeSource for callers that see only interfaces
// (the driver): the source, and what to close when the snapshot is made.
func (c *Copies) SnapshotChanges(ctx context.Context, base, cur localcopy.Frozen) (pvsnap.ChangeSource, io.Closer, error) {
	s, err := c.ChangeSource(ctx, base, cur)
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

// Changed is how many files have data or an inode item written since
// the base.
func (s *ChangeSource) Changed() int { return len(s.changed) }

// Close releases the instants' directory descriptors.
func (s *ChangeSource) Close() error {
	var err error
	for _, fd := range []*int{&s.baseFD, &s.curFD} {
		if *fd >= 0 {
			if e := unix.Close(*fd); err == nil {
				err = e
			}
			*fd = -1
		}
	}
	return err
}

// FileChanges implements snapshot.ChangeSource.
func (s *ChangeSource) FileChanges(path string, ino, size uint64) (pvsnap.FileChanges, error) {
	whole := pvsnap.FileChanges{}
	if s.baseFD < 0 {
		return whole, fmt.Errorf("volume %q: change source used after Close", s.base.Volume)
	}
	bst, ok, err := s.inBase(path)
	if err != nil {
		return whole, err
	}
	if !ok || bst.Ino != ino {
		return whole, nil
	}
	fc, listed := s.changed[ino]
	if !listed {
		return pvsnap.FileChanges{Unchanged: true}, nil
	}
	if fc.Size < 0 || uint64(fc.Size) != size {
		// The engine's stat and the tree search disagree: they read the
		// same read-only instant, so this is not expected; be safe.
		return whole, nil
	}
	diff, err := s.extentDiff(ino, fc.Size, bst.Size)
	if err != nil {
		return whole, fmt.Errorf("volume %q: extents of inode %d: %w", s.base.Volume, ino, err)
	}
	ranges := make([]pvsnap.Range, 0, len(diff))
	for _, r := range diff {
		ranges = append(ranges, pvsnap.Range{Off: uint64(r.Off), Len: uint64(r.Len)})
	}
	return pvsnap.FileChanges{Ranges: ranges}, nil
}

// extent is one piece of a file's extent map: zero (a hole, a gap
// between items, a preallocated extent), data at a disk location, or
// inline data.
type extent struct {
	off, len int64
	kind     byte // 'z', 'd' or 'i'
	bytenr   uint64
	extOff   uint64 // offset of off inside the extent on disk
	gen      uint64
}

// fileExtents lists inode ino's extent map of tree over [0, size),
// gaps filled with zero pieces.
func fileExtents(ctx context.Context, fd int, tree, ino uint64, size int64) ([]extent, error) {
	var out []extent
	var next int64
	var bad error
	err := treeSearch(fd, searchKey{
		treeID: tree, minObjectID: ino, maxObjectID: ino, minType: extentDataKey, maxType: extentDataKey,
		maxOffset: ^uint64(0), maxTransID: ^uint64(0),
	}, func(it searchItem) bool {
		if ctx.Err() != nil {
			return false
		}
		if it.typ != extentDataKey || it.objectID != ino {
			return true
		}
		if len(it.data) < feiType+1 {
			bad = fmt.Errorf("short file extent item")
			return false
		}
		r, ok := extentRange(it)
		if !ok || r.Off >= size || r.Len <= 0 || r.Off < next {
			// Past the end (a truncation inside an extent), empty, or
			// overlapping what came before: not data of the file.
			if ok && r.Off < next {
				bad = fmt.Errorf("file extent items overlap at %d", r.Off)
				return false
			}
			return true
		}
		r.Len = min(r.Len, size-r.Off)
		if r.Off > next {
			out = append(out, extent{off: next, len: r.Off - next, kind: 'z'})
		}
		e := extent{off: r.Off, len: r.Len, gen: binary.LittleEndian.Uint64(it.data[feiGeneration:])}
		switch it.data[feiType] {
		case extentInline:
			e.kind = 'i'
		case extentPrealloc:
			e.kind = 'z'
		default:
			e.bytenr = binary.LittleEndian.Uint64(it.data[feiDiskBytenr:])
			e.extOff = binary.LittleEndian.Uint64(it.data[feiExtOffset:])
			e.kind = 'd'
			if e.bytenr == 0 {
				e.kind = 'z'
			}
		}
		out = append(out, e)
		next = r.Off + r.Len
		return true
	})
	if err == nil {
		err = bad
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	if next < size {
		out = append(out, extent{off: next, len: size - next, kind: 'z'})
	}
	return out, nil
}

// extentDiff compares inode ino's extent map in cur (size curSize) with
// the base's (baseSize) and returns the ranges of [0, curSize) whose bytes
// may differ. A range holds the same bytes when it is zero in both
// (holes and preallocated extents read as zeros; the base reads as zero
// past its end), or when both point at the same bytes of the same disk
// extent and cur's item is not newer than the base: an extent the base
// still references is never overwritten in place, not even in a
// nodatacow file (the first write after the Freeze copies it). Comparing
// locations, not only generations, matters for clones (FICLONERANGE, cp
// --reflink): a cloned item keeps its source's generation. Inline data
// (at most a few KiB) is always counted as changed.
func (s *ChangeSource) extentDiff(ino uint64, curSize, baseSize int64) ([]localcopy.Range, error) {
	cur, err := fileExtents(s.ctx, s.curFD, s.curTree, ino, curSize)
	if err != nil {
		return nil, err
	}
	base, err := fileExtents(s.ctx, s.baseFD, s.baseTree, ino, baseSize)
	if err != nil {
		return nil, err
	}
	var out []localcopy.Range
	add := func(off, end int64) {
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == off {
			out[n-1].Len = end - out[n-1].Off
			return
		}
		out = append(out, localcopy.Range{Off: off, Len: end - off})
	}
	j := 0
	for _, c := range cur {
		pos, end := c.off, c.off+c.len
		for pos < end {
			for j < len(base) && base[j].off+base[j].len <= pos {
				j++
			}
			b := extent{off: pos, len: end - pos, kind: 'z'} // past the base's end
			if j < len(base) {
				b = base[j]
			}
			stop := min(end, b.off+b.len)
			same := false
			switch {
			case c.kind == 'z' && b.kind == 'z':
				same = true
			case c.kind == 'd' && b.kind == 'd':
				same = c.gen <= s.base.Generation && c.bytenr == b.bytenr &&
					c.extOff+uint64(pos-c.off) == b.extOff+uint64(pos-b.off)
			}
			if !same {
				add(pos, stop)
			}
			pos = stop
		}
	}
	return out, nil
}

// inBase stats path inside the base instant without following any
// symlink or leaving its subvolume. ok is false when there is no regular
// file there.
func (s *ChangeSource) inBase(path string) (unix.Stat_t, bool, error) {
	var st unix.Stat_t
	fd, err := unix.Openat2(s.baseFD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		switch err {
		case unix.ENOENT, unix.ENOTDIR, unix.ELOOP, unix.EXDEV, unix.EINVAL:
			return st, false, nil
		}
		return st, false, fmt.Errorf("volume %q: %s in the base instant: %w", s.base.Volume, path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, false, fmt.Errorf("volume %q: %s in the base instant: %w", s.base.Volume, path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Dev != s.baseDev {
		return st, false, nil
	}
	return st, true, nil
}
