package snapshot

// ChangeSource tells Create which files changed since the parent snapshot
// and where, so that it reads only that (doc.go, "Change discovery"). The
// btrfs volume backend implements it from extent generations; without
// one, Create compares stats as it always did.
//
// Create walks the tree as usual (names, types, metadata are cheap to
// stat) and asks FileChanges once for every regular file that exists at
// the same path in the parent snapshot, from one goroutine.
type ChangeSource interface {
	// FileChanges reports how the regular file at path (slash-separated,
	// relative to the volume root) differs from the content the parent
	// snapshot records at that path. ino and size are the file's now.
	// The answer must cover every byte that may differ, including bytes
	// added by growing the file; an error fails the snapshot.
	FileChanges(path string, ino uint64, size uint64) (FileChanges, error)
}

// FileChanges is a ChangeSource's answer for one file.
type FileChanges struct {
	// Unchanged: the content equals the parent's; the file is not
	// opened, whatever its timestamps say.
	Unchanged bool
	// Ranges lists the byte ranges that may differ when !Unchanged; nil
	// means the whole file. Create rounds them out to whole blocks.
	Ranges []Range
}

// Range is a byte range of a file.
type Range struct {
	Off, Len uint64
}

// blockRanges turns byte ranges into sorted, merged, inclusive block
// ranges of a file of size bytes whose parent version had oldSize bytes.
// The old last block, and every block past it, is always included: a
// changed size changes them even where no byte was written.
func blockRanges(ranges []Range, size, oldSize uint64, bs int) [][2]uint64 {
	b := uint64(bs)
	var out [][2]uint64
	add := func(first, last uint64) {
		out = append(out, [2]uint64{first, last})
	}
	for _, r := range ranges {
		if r.Len == 0 || r.Off >= size {
			continue
		}
		end := min(r.Off+r.Len, size)
		add(r.Off/b, (end-1)/b)
	}
	if size != oldSize && size > 0 {
		first := min(oldSize, size-1) / b
		if oldSize > 0 && oldSize%b == 0 && oldSize < size {
			first = oldSize / b
		}
		add(first, (size-1)/b)
	}
	// Sort and merge.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j][0] < out[j-1][0]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	if merged == nil {
		return [][2]uint64{} // nothing to read, but not "everything"
	}
	return merged
}
