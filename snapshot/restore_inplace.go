package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// In-place restore (RestoreOptions.InPlace): dir holds exactly snapshot
// Previous, and is brought to snapshot id by writing only what differs:
// blocks whose chunk changed (fetched and verified like any restore),
// holes punched where data became zero, files truncated or extended,
// entries created and removed, metadata set. Its cost follows the delta,
// not the volume. It is not atomic by itself: the caller makes it so by
// restoring into a writable snapshot of the old copy and swapping
// (doc.go, "Restore in place").

// restoreInPlace is Restore with opts.InPlace.
func (r *Repo) restoreInPlace(ctx context.Context, volume, id, dir string, m *Manifest, prog *progress, opts RestoreOptions) error {
	if opts.Previous == "" {
		return fmt.Errorf("volume %q: an in-place restore needs the snapshot the directory holds (Previous): %w", volume, ErrInvalid)
	}
	old, err := r.loadManifest(ctx, volume, opts.Previous)
	if err != nil {
		return fmt.Errorf("volume %q: snapshot the target holds: %w", volume, err)
	}
	rs := &restorer{r: r, m: m, paths: m.Paths(), old: -1, stage: -1, prog: prog, inPlace: true}
	defer rs.close()
	// Only the list parts of spans that differ are loaded, of both
	// snapshots: the rest of a kept file stays as it is, so the work
	// follows the change, not the volume.
	keep := rs.planKeep(old)
	want, oldWant := inPlaceParts(m, old, keep)
	if err := r.loadSomeParts(ctx, m, want); err != nil {
		return fmt.Errorf("volume %q: snapshot %s: %w", volume, id, err)
	}
	if err := r.loadSomeParts(ctx, old, oldWant); err != nil {
		return fmt.Errorf("volume %q: snapshot the target holds: snapshot %s: %w", volume, old.ID, err)
	}
	if err := r.checkPrivileged(m); err != nil {
		return err
	}
	rs.partial = partialNodes(m, want)
	if rs.stage, err = openDir(dir); err != nil {
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	}
	if err := removeStatCache(opts.StatCache); err != nil {
		return fmt.Errorf("volume %q: %w", volume, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("volume %q: restoring snapshot %s in place into %s: %w", volume, id, dir, err)
	}
	if err := rs.removeOld(old, keep); err != nil {
		return fail(err)
	}
	if err := rs.buildInPlace(ctx, old, keep); err != nil {
		return fail(err)
	}
	rs.prog.setPhase("download")
	if err := rs.fill(ctx); err != nil {
		return fail(err)
	}
	rs.prog.setPhase("finish")
	if err := rs.applyMetadata(); err != nil {
		return fail(err)
	}
	if err := unix.Syncfs(rs.stage); err != nil {
		return fmt.Errorf("volume %q: syncing restored data: %w", volume, err)
	}
	rs.closeStage()
	if opts.StatCache != "" {
		if err := writeRestoreCache(m, rs.paths, dir, opts.StatCache); err != nil {
			return fmt.Errorf("volume %q: snapshot %s restored, but %w", volume, id, err)
		}
	}
	return nil
}

// inPlaceKeepable reports whether node i of m can be updated in place:
// hardlinked files are rewritten whole, since writing one name would
// write the others.
func inPlaceKeepable(m *Manifest, i int, linked map[int32]bool) bool {
	n := &m.Nodes[i]
	return n.Type != TypeHardlink && !linked[int32(i)]
}

func linkTargets(m *Manifest) map[int32]bool {
	t := map[int32]bool{}
	for _, n := range m.Nodes {
		if n.Type == TypeHardlink {
			t[n.Link] = true
		}
	}
	return t
}

// planKeep returns, per node of m, the node of old it updates in place
// (-1: create it): the same path, the same type, neither hardlinked, and
// for symlinks and devices the same target.
func (rs *restorer) planKeep(old *Manifest) []int32 {
	m := rs.m
	newAt := make(map[string]int32, len(m.Nodes))
	for i, p := range rs.paths {
		newAt[p] = int32(i)
	}
	oldLinked, newLinked := linkTargets(old), linkTargets(m)
	keep := make([]int32, len(m.Nodes))
	for i := range keep {
		keep[i] = -1
	}
	for i, p := range old.Paths() {
		if i == 0 {
			continue
		}
		o := &old.Nodes[i]
		if j, ok := newAt[p]; ok && m.Nodes[j].Type == o.Type &&
			inPlaceKeepable(old, i, oldLinked) && inPlaceKeepable(m, int(j), newLinked) &&
			(o.Type != TypeSymlink || o.Target == m.Nodes[j].Target) &&
			(o.Type != TypeCharDev && o.Type != TypeBlockDev || o.Rdev == m.Nodes[j].Rdev) {
			keep[j] = int32(i)
		}
	}
	keep[0] = 0
	return keep
}

// inPlaceParts says which list parts of m and of old an in-place restore
// from old to m must load: every part of a file it creates; of a kept
// file, the parts of the spans whose part differs (a part with the same
// ID holds the same chunks at the same blocks), from both sides. A nil
// result loads all of them; a version 1 manifest has no parts.
func inPlaceParts(m, old *Manifest, keep []int32) (want, oldWant []bool) {
	if m.BlockSize != old.BlockSize {
		return nil, make([]bool, len(old.parts)) // every block is written again
	}
	if m.Version < 2 || old.Version < 2 {
		return nil, nil
	}
	// parts are stored in node order, spans increasing within a node.
	partsOf := func(x *Manifest) [][2]int {
		r := make([][2]int, len(x.Nodes))
		for i := 0; i < len(x.parts); {
			j := i
			for j < len(x.parts) && x.parts[j].Node == x.parts[i].Node {
				j++
			}
			r[x.parts[i].Node] = [2]int{i, j}
			i = j
		}
		return r
	}
	newOf, oldOf := partsOf(m), partsOf(old)
	want, oldWant = make([]bool, len(m.parts)), make([]bool, len(old.parts))
	for j := range m.Nodes {
		if m.Nodes[j].Type != TypeFile {
			continue
		}
		a, aEnd := newOf[j][0], newOf[j][1]
		if keep[j] < 0 {
			for ; a < aEnd; a++ {
				want[a] = true
			}
			continue
		}
		b, bEnd := oldOf[keep[j]][0], oldOf[keep[j]][1]
		for a < aEnd || b < bEnd {
			switch {
			case b == bEnd || a < aEnd && m.parts[a].Span < old.parts[b].Span:
				want[a] = true
				a++
			case a == aEnd || old.parts[b].Span < m.parts[a].Span:
				oldWant[b] = true
				b++
			default:
				if m.parts[a].ID != old.parts[b].ID {
					want[a], oldWant[b] = true, true
				}
				a++
				b++
			}
		}
	}
	return want, oldWant
}

// partialNodes marks the nodes of m some of whose parts were not loaded.
func partialNodes(m *Manifest, want []bool) []bool {
	if want == nil {
		return nil
	}
	partial := make([]bool, len(m.Nodes))
	for i, p := range m.parts {
		if !want[i] {
			partial[p.Node] = true
		}
	}
	return partial
}

// removeOld removes what old has and m does not keep (keep, from
// planKeep), deepest first.
func (rs *restorer) removeOld(old *Manifest, keep []int32) error {
	kept := make([]bool, len(old.Nodes))
	for _, k := range keep {
		if k >= 0 {
			kept[k] = true
		}
	}
	oldPaths := old.Paths()
	for i := len(old.Nodes) - 1; i >= 1; i-- {
		if kept[i] {
			continue
		}
		o := &old.Nodes[i]
		dfd, err := rs.oldDirFD(oldPaths, old, o.Parent)
		if err != nil {
			return err
		}
		flags := 0
		if o.Type == TypeDir {
			flags = unix.AT_REMOVEDIR
		}
		err = unix.Unlinkat(dfd, o.Name, flags)
		if dfd != rs.stage {
			unix.Close(dfd)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %s: %w", oldPaths[i], err)
		}
	}
	return nil
}

func (rs *restorer) oldDirFD(paths []string, old *Manifest, parent int32) (int, error) {
	if parent == 0 {
		return rs.stage, nil
	}
	return openBeneath(rs.stage, paths[parent], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// buildInPlace creates the nodes that do not exist yet, resizes the kept
// files, punches holes where data became zero, and sets rs.write to the
// blocks that differ.
func (rs *restorer) buildInPlace(ctx context.Context, old *Manifest, keep []int32) error {
	m := rs.m
	rs.linked = make([]bool, len(m.Nodes))
	rs.write = make([][]BlockRef, len(m.Nodes))
	bs := int64(m.BlockSize)
	sameGrid := old.BlockSize == m.BlockSize
	for i := 1; i < len(m.Nodes); i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		n := &m.Nodes[i]
		if n.Type == TypeFile {
			rs.write[i] = n.Blocks
		}
		if keep[i] < 0 {
			if err := rs.createNode(i); err != nil {
				return err
			}
			continue
		}
		if n.Type != TypeFile {
			continue
		}
		o := &old.Nodes[keep[i]]
		fd, err := openBeneath(rs.stage, rs.paths[i], unix.O_WRONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", rs.paths[i], err)
		}
		err = func() error {
			defer unix.Close(fd)
			if o.Size != n.Size {
				if err := unix.Ftruncate(fd, int64(n.Size)); err != nil {
					return err
				}
			}
			if !sameGrid {
				return punch(fd, 0, int64(n.Size)) // everything is written again
			}
			var diff []BlockRef
			j := 0
			for _, b := range n.Blocks {
				for j < len(o.Blocks) && o.Blocks[j].Index < b.Index {
					if err := punchBlock(fd, o.Blocks[j].Index, bs, n.Size); err != nil {
						return err
					}
					j++
				}
				same := j < len(o.Blocks) && o.Blocks[j].Index == b.Index &&
					old.Chunks[o.Blocks[j].Chunk].ID == m.Chunks[b.Chunk].ID
				if j < len(o.Blocks) && o.Blocks[j].Index == b.Index {
					j++
				}
				if !same {
					diff = append(diff, b)
				}
			}
			for ; j < len(o.Blocks); j++ {
				if err := punchBlock(fd, o.Blocks[j].Index, bs, n.Size); err != nil {
					return err
				}
			}
			rs.write[i] = diff
			return nil
		}()
		if err != nil {
			return fmt.Errorf("updating %s: %w", rs.paths[i], err)
		}
	}
	return nil
}

// punchBlock makes block idx of a file of size bytes a hole (it was data
// and is now all zero).
func punchBlock(fd int, idx uint64, bs int64, size uint64) error {
	off := int64(idx) * bs
	if uint64(off) >= size {
		return nil // truncated away
	}
	return punch(fd, off, min(bs, int64(size)-off))
}

func punch(fd int, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// No hole punching here: write zeros.
		z := make([]byte, n)
		return pwriteAll(fd, z, off)
	}
	return err
}

// createNode creates node i of rs.m below rs.stage, as build does.
func (rs *restorer) createNode(i int) error {
	n := &rs.m.Nodes[i]
	dfd, err := rs.dirFD(n.Parent)
	if err != nil {
		return err
	}
	switch n.Type {
	case TypeDir:
		err = unix.Mkdirat(dfd, n.Name, 0o700)
	case TypeFile:
		err = createSized(dfd, n.Name, n.Size)
	case TypeHardlink:
		var tfd int
		tfd, err = openBeneath(rs.stage, rs.paths[n.Link], unix.O_PATH|unix.O_NOFOLLOW, 0)
		if err == nil {
			err = linkFD(tfd, dfd, n.Name)
			unix.Close(tfd)
		}
	case TypeSymlink:
		err = unix.Symlinkat(n.Target, dfd, n.Name)
	case TypeFIFO:
		err = unix.Mknodat(dfd, n.Name, unix.S_IFIFO|0o600, 0)
	case TypeCharDev:
		err = unix.Mknodat(dfd, n.Name, unix.S_IFCHR|0o600, int(n.Rdev))
	case TypeBlockDev:
		err = unix.Mknodat(dfd, n.Name, unix.S_IFBLK|0o600, int(n.Rdev))
	}
	if err != nil {
		return fmt.Errorf("creating %s %s: %w", n.Type, filepath.Clean(rs.paths[i]), err)
	}
	return nil
}
