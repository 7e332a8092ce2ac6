package btrfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

// File extent item (struct btrfs_file_extent_item, packed).
const (
	feiGeneration = 0
	feiRAMBytes   = 8
	feiType       = 20
	feiDiskBytenr = 21
	feiNumBytes   = 45
	feiSize       = 53

	extentInline   = 0
	extentRegular  = 1
	extentPrealloc = 2

	inodeTransID = 8
	inodeSize    = 16
	inodeMode    = 52
)

// Changes implements localcopy.ChangeFinder: a tree search of cur's
// subvolume over the metadata blocks written after base's generation
// (what `btrfs subvolume find-new` does), keeping the file extent items
// whose own generation is newer than base's and the inodes whose item
// changed. Then, for each such regular file, its full extent map gives
// its holes (a hole punched since base leaves no newer extent item).
// The cost follows the change, not the volume's size.
func (c *Copies) Changes(ctx context.Context, base, cur localcopy.Frozen) ([]localcopy.FileChange, error) {
	if err := c.checkInstant(base); err != nil {
		return nil, err
	}
	if err := c.checkInstant(cur); err != nil {
		return nil, err
	}
	if base.Volume != cur.Volume || base.Generation >= cur.Generation {
		return nil, fmt.Errorf("volume %q: changes from instant %s (generation %d) to %s (%s, generation %d): %w",
			base.Volume, base.ID, base.Generation, cur.ID, cur.Volume, cur.Generation, localcopy.ErrInvalid)
	}
	return findChanges(ctx, cur, base.Generation)
}

// findChanges is Changes without the checks that base and cur are
// instants of the pool: the changes in subvolume cur.Path since
// generation gen (cur.Volume and cur.ID name it in errors).
func findChanges(ctx context.Context, cur localcopy.Frozen, gen uint64) ([]localcopy.FileChange, error) {
	fd, err := openDir(cur.Path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	info, err := getSubvolInfo(fd)
	if err != nil {
		return nil, fmt.Errorf("volume %q: instant %s: %w", cur.Volume, cur.ID, err)
	}
	tree := info.treeID()

	type file struct {
		changedInode bool
		size         int64
		regular      bool
		known        bool // the inode item was seen
		ranges       []localcopy.Range
	}
	files := map[uint64]*file{}
	get := func(ino uint64) *file {
		f := files[ino]
		if f == nil {
			f = &file{}
			files[ino] = f
		}
		return f
	}
	var bad error
	err = treeSearch(fd, searchKey{
		treeID: tree, minObjectID: firstFreeObjID, maxObjectID: ^uint64(0),
		maxType: 255, maxOffset: ^uint64(0), minTransID: gen + 1, maxTransID: ^uint64(0),
	}, func(it searchItem) bool {
		if ctx.Err() != nil {
			return false
		}
		switch it.typ {
		case inodeItemKey:
			if len(it.data) < inodeMode+4 {
				bad = fmt.Errorf("inode %d: short inode item", it.objectID)
				return false
			}
			if binary.LittleEndian.Uint64(it.data[inodeTransID:]) > gen {
				f := get(it.objectID)
				f.changedInode = true
				f.known = true
				f.size = int64(binary.LittleEndian.Uint64(it.data[inodeSize:]))
				f.regular = binary.LittleEndian.Uint32(it.data[inodeMode:])&unix.S_IFMT == unix.S_IFREG
			}
		case extentDataKey:
			if len(it.data) < feiType+1 {
				bad = fmt.Errorf("inode %d: short file extent item", it.objectID)
				return false
			}
			if binary.LittleEndian.Uint64(it.data[feiGeneration:]) <= gen {
				return true
			}
			r, ok := extentRange(it)
			if ok {
				f := get(it.objectID)
				f.ranges = append(f.ranges, r)
			}
		}
		return true
	})
	if err == nil {
		err = bad
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("volume %q: searching changes since generation %d: %w", cur.Volume, gen, err)
	}

	inos := make([]uint64, 0, len(files))
	for ino := range files {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	out := make([]localcopy.FileChange, 0, len(inos))
	for _, ino := range inos {
		f := files[ino]
		if !f.known {
			// Extents changed but the inode item's block was not in the
			// search (it cannot be: writing data updates the inode).
			// Read the item to be sure.
			size, regular, err := inodeItem(fd, tree, ino)
			if err != nil {
				return nil, fmt.Errorf("volume %q: inode %d: %w", cur.Volume, ino, err)
			}
			f.size, f.regular = size, regular
		}
		if !f.regular {
			continue
		}
		holes, err := fileHoles(ctx, fd, tree, ino, f.size)
		if err != nil {
			return nil, fmt.Errorf("volume %q: inode %d: %w", cur.Volume, ino, err)
		}
		p, err := inoLookup(fd, tree, ino)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("volume %q: path of inode %d: %w", cur.Volume, ino, err)
		}
		out = append(out, localcopy.FileChange{
			Inode: ino, Path: p, Size: f.size,
			Ranges: mergeRanges(clip(f.ranges, f.size)), Holes: holes,
		})
	}
	return out, nil
}

func (c *Copies) checkInstant(f localcopy.Frozen) error {
	if err := c.checkFrozen(f); err != nil {
		return err
	}
	if f.Generation == 0 {
		return fmt.Errorf("volume %q: instant %s has no generation: %w", f.Volume, f.ID, localcopy.ErrInvalid)
	}
	return nil
}

// extentRange is the file range a file extent item covers.
func extentRange(it searchItem) (localcopy.Range, bool) {
	switch it.data[feiType] {
	case extentInline:
		if len(it.data) < feiRAMBytes+8 {
			return localcopy.Range{}, false
		}
		return localcopy.Range{Off: int64(it.offset), Len: int64(binary.LittleEndian.Uint64(it.data[feiRAMBytes:]))}, true
	case extentRegular, extentPrealloc:
		if len(it.data) < feiSize {
			return localcopy.Range{}, false
		}
		return localcopy.Range{Off: int64(it.offset), Len: int64(binary.LittleEndian.Uint64(it.data[feiNumBytes:]))}, true
	}
	return localcopy.Range{}, false
}

// inodeItem reads inode ino's size and whether it is a regular file.
func inodeItem(fd int, tree, ino uint64) (int64, bool, error) {
	var size int64
	var regular, found bool
	err := treeSearch(fd, searchKey{
		treeID: tree, minObjectID: ino, maxObjectID: ino, minType: inodeItemKey, maxType: inodeItemKey,
		maxOffset: ^uint64(0), maxTransID: ^uint64(0),
	}, func(it searchItem) bool {
		if it.typ == inodeItemKey && it.objectID == ino && len(it.data) >= inodeMode+4 {
			size = int64(binary.LittleEndian.Uint64(it.data[inodeSize:]))
			regular = binary.LittleEndian.Uint32(it.data[inodeMode:])&unix.S_IFMT == unix.S_IFREG
			found = true
		}
		return false
	})
	if err == nil && !found {
		return 0, false, nil // deleted meanwhile: nothing to read
	}
	return size, regular, err
}

// fileHoles lists the ranges of [0, size) of inode ino that hold no data:
// gaps between extent items (filesystems with no-holes), hole extents
// (disk_bytenr 0) and preallocated extents, which read as zeros.
func fileHoles(ctx context.Context, fd int, tree, ino uint64, size int64) ([]localcopy.Range, error) {
	var holes []localcopy.Range
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
		if !ok {
			return true
		}
		if r.Off > next {
			holes = append(holes, localcopy.Range{Off: next, Len: r.Off - next})
		}
		empty := it.data[feiType] == extentPrealloc ||
			(it.data[feiType] == extentRegular && len(it.data) >= feiSize && binary.LittleEndian.Uint64(it.data[feiDiskBytenr:]) == 0)
		if empty {
			holes = append(holes, r)
		}
		next = max(next, r.Off+r.Len)
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
		holes = append(holes, localcopy.Range{Off: next, Len: size - next})
	}
	return mergeRanges(clip(holes, size)), nil
}

// clip cuts ranges to [0, size): extent items may reach past the end of
// a file (a truncation inside a block).
func clip(rs []localcopy.Range, size int64) []localcopy.Range {
	out := rs[:0]
	for _, r := range rs {
		if r.Off >= size {
			continue
		}
		if r.Off+r.Len > size {
			r.Len = size - r.Off
		}
		if r.Len > 0 {
			out = append(out, r)
		}
	}
	return out
}

// mergeRanges sorts ranges and merges those that touch or overlap.
func mergeRanges(rs []localcopy.Range) []localcopy.Range {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	out := []localcopy.Range{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Off <= last.Off+last.Len {
			last.Len = max(last.Len, r.Off+r.Len-last.Off)
			continue
		}
		out = append(out, r)
	}
	return out
}
