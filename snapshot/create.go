package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/transfer"
	"golang.org/x/sys/unix"
)

// CreateOptions configures Create.
type CreateOptions struct {
	// Parent is the snapshot the directory was last restored from or
	// snapshotted to; "" for a first snapshot. Unchanged files reuse its
	// chunk lists unread, and only chunks it lacks are uploaded.
	Parent string
	// Host is the writer's host ID, recorded in the manifest.
	Host string
	// Generation is the writer's lease generation, recorded in the
	// manifest as its fencing token.
	Generation uint64
	// StatCache is a local file, outside dir, where Create and Restore
	// record what they saw of dir; "" disables it. See doc.go.
	StatCache string
	// Changes, if set, says which files changed since Parent and where
	// (see ChangeSource); files it calls unchanged are not opened.
	Changes ChangeSource
	// SkipUnchanged: when the tree, its metadata and its content equal
	// Parent's, write no new snapshot and return Parent's manifest with
	// Unchanged set (the stat cache is still brought up to date).
	SkipUnchanged bool
	// Live: dir may change while Create reads it (a directory in use,
	// read file by file): a file that vanishes before it is read is left
	// out, a file replaced under its name (rename over it) is read as it
	// is then, a directory that vanishes or is replaced while walked is
	// kept without its entries, so the snapshot completes. Without Live
	// such changes fail Create with ErrChanged. A frozen instant (a
	// read-only btrfs snapshot) needs no Live.
	Live bool
	// Progress, if set, is called from one goroutine a few times a second.
	Progress func(Progress)
	// Frozen, if set, is when dir — a frozen instant — began to be taken.
	// The stat cache and Manifest.Started then record it, not the start
	// of Create, as the moment the files were seen: a file written just
	// before the instant and again after it, within the timestamp
	// granularity, is read again by the next snapshot.
	Frozen time.Time
}

// Create snapshots the directory tree dir of volume and returns its
// manifest. The snapshot is visible (Load, List) only once every object it
// needs is stored; if Create fails or is interrupted, nothing a reader
// could mistake for a snapshot is left behind, and a new Create with the
// same parent reuses the packs already uploaded.
//
// Create does not touch the volume's head record: publishing the snapshot
// as the volume's latest is the caller's job.
func (r *Repo) Create(ctx context.Context, volume, dir string, opts CreateOptions) (*Manifest, error) {
	if err := checkVolume(volume); err != nil {
		return nil, err
	}
	if opts.Parent != "" {
		if err := checkSnapshotID(opts.Parent); err != nil {
			return nil, err
		}
	}
	if len(opts.Host) > maxHostLen {
		return nil, fmt.Errorf("host id of %d bytes exceeds %d: %w", len(opts.Host), maxHostLen, ErrInvalid)
	}
	if err := checkCacheOutside(opts.StatCache, dir); err != nil {
		return nil, err
	}
	started := r.now()
	seen := started // the moment the stat cache and manifest record
	if !opts.Frozen.IsZero() && opts.Frozen.Before(seen) {
		seen = opts.Frozen
	}
	root, err := openDir(dir)
	if err != nil {
		return nil, fmt.Errorf("volume %q: snapshot source: %w", volume, err)
	}
	defer unix.Close(root)

	// List the indexes of earlier attempts while the parent loads and
	// the tree is scanned.
	ixPrefix := indexPrefix(volume, opts.Parent)
	type listing struct {
		found []indexObject
		err   error
	}
	listed := make(chan listing, 1)
	go func() {
		found, err := r.listIndexes(ctx, ixPrefix)
		listed <- listing{found, err}
	}()
	var parent *Manifest
	if opts.Parent != "" {
		if parent, err = r.loadManifest(ctx, volume, opts.Parent); err != nil {
			return nil, fmt.Errorf("volume %q: parent snapshot: %w", volume, err)
		}
	}
	g, err := r.startGuard(ctx, volume, parent)
	if err != nil {
		return nil, err
	}
	// With a ChangeSource, only the parent's list parts of what changed
	// are loaded, after the source is asked (partialParent); otherwise
	// all of them, now. A pending collection needs them all: each of the
	// parent's packs is checked against it.
	partial := parent != nil && !g.dropParent && opts.Changes != nil && !opts.Live &&
		parent.Version >= 2 && parent.BlockSize == r.blockSize && len(g.fossils) == 0
	if parent != nil && !g.dropParent && !partial {
		if err := r.loadContent(ctx, parent); err != nil {
			return nil, fmt.Errorf("volume %q: parent snapshot: %w", volume, err)
		}
		g.checkParent()
	}
	if g.dropParent {
		parent = nil // its packs are being collected: read everything again
	}

	prog := startProgress(opts.Progress, "scan")
	defer prog.finish()
	t, err := walkTreeLive(ctx, root, opts.Live)
	if err != nil {
		return nil, fmt.Errorf("volume %q: scanning %s: %w", volume, dir, err)
	}
	var pp *partialParent
	if partial {
		pp = &partialParent{}
	}
	toRead, err := r.reuseUnchanged(ctx, t, parent, loadStatCache(opts.StatCache), opts.Changes, pp)
	if err != nil {
		return nil, fmt.Errorf("volume %q: %w", volume, err)
	}

	expect := 0
	for _, f := range toRead {
		expect += int(numBlocks(f.st.Size, r.blockSize))
	}
	reg := newRegistry(parent, expect)
	reg.avoid = g.fossils
	skip := map[ID]bool{}
	if parent != nil {
		for _, p := range parent.Packs {
			skip[p] = true
		}
	}
	l := <-listed
	l.found = g.usableIndexes(l.found)
	if l.err == nil {
		l.err = r.readIndexes(ctx, l.found, skip, reg.addIndex)
	}
	if l.err != nil {
		return nil, fmt.Errorf("volume %q: %w", volume, l.err)
	}
	prog.files.Store(uint64(len(toRead)))
	prog.setPhase("upload")
	if err := r.readBlocks(ctx, root, toRead, reg, ixPrefix, prog, &t.stats); err != nil {
		return nil, fmt.Errorf("volume %q: snapshot of %s: %w", volume, dir, err)
	}

	read := make(map[*Node]bool, len(toRead))
	gone := map[*Node]bool{}
	for _, f := range toRead {
		read[f.node] = true
		if f.replaced {
			t.stat[f.idx] = f.st
		}
		if f.vanished {
			gone[f.node] = true
		}
	}
	if len(gone) > 0 {
		read = t.dropNodes(gone, read)
	}
	m := &Manifest{Info: Info{
		ID: newSnapshotID(started), Volume: volume, Parent: opts.Parent, Host: opts.Host,
		Generation: opts.Generation, Started: seen, BlockSize: r.blockSize, Stats: t.stats,
	}}
	m.Nodes = t.nodes
	m.Packs, m.Chunks = compactChunks(m.Nodes, read, reg, &m.Stats)
	if pp != nil {
		// The spans not loaded are the parent's, each kept once.
		m.Stats.DataBytes += parent.Stats.DataBytes - pp.loadedBytes
	}
	unchanged := parent != nil && sameSnapshot(m, parent)
	if unchanged && opts.SkipUnchanged {
		parent.CacheErr = saveCreateCache(opts.StatCache, parent.ID, seen, t)
		parent.Unchanged = true
		return parent, nil
	}
	if err := r.writeParts(ctx, m, parent, pp, reg, ixPrefix, prog); err != nil {
		return nil, fmt.Errorf("volume %q: snapshot of %s: %w", volume, dir, err)
	}
	m.Unchanged = unchanged
	m.Finished = r.now()

	// The stat cache goes first: if publishing fails, it names a snapshot
	// that does not exist and is ignored.
	m.CacheErr = saveCreateCache(opts.StatCache, m.ID, seen, t)
	key := manifestKey(volume, m.ID)
	data, err := encodeManifest(m, key, r.crypt)
	if err != nil {
		return nil, fmt.Errorf("volume %q: %w", volume, err)
	}
	// Last look before the manifest makes the packs referenced: nothing
	// it names may be missing or marked for deletion (guard.go).
	look := time.Now()
	if err := g.finish(ctx, m); err != nil {
		return nil, fmt.Errorf("volume %q: %w", volume, err)
	}
	if time.Since(look) > r.window {
		// The look itself took longer than the window: look once more,
		// so that the write follows a recent one.
		look = time.Now()
		if err := g.finish(ctx, m); err != nil {
			return nil, fmt.Errorf("volume %q: %w", volume, err)
		}
	}
	if _, err := r.store.PutIfAbsent(ctx, key, data); err != nil {
		// The write's outcome may be unknown (an answer lost after the
		// store applied it, a cancelled request): the manifest may be in
		// the store although this Create reports failure, and nobody
		// would then take the second look below. It is taken back, if it
		// is this Create's (a precondition failure of a retried request
		// finds its own earlier write).
		if errors.Is(err, transfer.ErrPrecondition) && !r.isOwnManifest(ctx, key, data) {
			return nil, fmt.Errorf("volume %q: snapshot %s already exists; retry: %w", volume, m.ID, err)
		}
		if derr := r.withdraw(ctx, key); derr != nil {
			err = errors.Join(err, fmt.Errorf("withdrawing manifest %s, whose write may have been applied: %w", key, derr))
		}
		return nil, fmt.Errorf("volume %q: writing manifest %s: %w", volume, key, err)
	}
	if time.Since(look) > r.window {
		// Stalled between the look and the write: look again, and take
		// the manifest back if a prune may have moved meanwhile.
		if err := g.finish(ctx, m); err != nil {
			if derr := r.withdraw(ctx, key); derr != nil {
				err = errors.Join(err, fmt.Errorf("withdrawing manifest %s: %w", key, derr))
			}
			return nil, fmt.Errorf("volume %q: %w", volume, err)
		}
	}
	return m, nil
}

// isOwnManifest reports whether the object at key holds exactly data,
// this Create's manifest (read with a bound, under a context of its own
// so that a cancelled Create can still find out).
func (r *Repo) isOwnManifest(ctx context.Context, key string, data []byte) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	got, _, err := r.store.Load(ctx, key, int64(len(data))+1)
	return err == nil && bytes.Equal(got, data)
}

// saveCreateCache writes the stat cache for snapshot id, or, when that
// fails, removes it. The cache is an optimisation: a snapshot never fails
// (or, in a caller that retries, loops for ever while it holds the lease)
// because its cache cannot be written — a full state directory is the
// usual reason, and removing a file needs no space. A cache left in place
// after both failed still describes what it names: a snapshot other than
// the next Create's parent, or, unchanged, the parent itself.
func saveCreateCache(path, id string, started time.Time, t *tree) error {
	err := writeCreateCache(path, id, started, t)
	if err != nil {
		if rerr := removeStatCache(path); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// writeCreateCache records what Create saw of the tree, for snapshot id.
func writeCreateCache(path, id string, started time.Time, t *tree) error {
	if path != "" {
		sc := &statCache{Snapshot: id, Source: sourceCreate, Taken: started.UnixNano(), Entries: make(map[string]statEntry)}
		for i, n := range t.nodes {
			if n.Type == TypeFile {
				sc.Entries[t.paths[i]] = t.stat[i]
			}
		}
		return writeStatCache(path, sc)
	}
	return nil
}

// reuseUnchanged gives every file that is unchanged since the parent the
// parent's block list, and returns the files that must be read (with the
// blocks to read, when a ChangeSource narrows them down). With pp, the
// parent's list parts are not loaded yet: it loads those of the spans
// that changed (and of whatever it cannot account for span by span), and
// records in pp the parts each file keeps unread.
func (r *Repo) reuseUnchanged(ctx context.Context, t *tree, parent *Manifest, cache *statCache, changes ChangeSource, pp *partialParent) ([]*readFile, error) {
	var byPath map[string]int32
	if parent != nil && parent.BlockSize == r.blockSize {
		byPath = make(map[string]int32, len(parent.Nodes))
		for i, p := range parent.Paths() {
			n := &parent.Nodes[i]
			switch n.Type {
			case TypeFile:
				byPath[p] = int32(i)
			case TypeHardlink:
				byPath[p] = n.Link
			}
		}
	}
	var answers []FileChanges // per node, with changes
	if changes != nil {
		answers = make([]FileChanges, len(t.nodes))
		for i := range t.nodes {
			if _, ok := byPath[t.paths[i]]; ok && t.nodes[i].Type == TypeFile {
				fc, err := changes.FileChanges(t.paths[i], t.stat[i].Ino, t.stat[i].Size)
				if err != nil {
					return nil, fmt.Errorf("change source, %s: %w", t.paths[i], err)
				}
				answers[i] = fc
			}
		}
	}
	if pp != nil {
		if err := pp.load(ctx, r, t, parent, byPath, answers); err != nil {
			return nil, err
		}
	}
	useCache := cache != nil && parent != nil && cache.Snapshot == parent.ID
	var toRead []*readFile
	for i := range t.nodes {
		n := &t.nodes[i]
		if n.Type != TypeFile {
			continue
		}
		st := t.stat[i]
		f := &readFile{node: n, idx: int32(i), path: t.paths[i], st: st, fd: -1, live: t.live}
		if pi, ok := byPath[t.paths[i]]; ok {
			pn := &parent.Nodes[pi]
			if changes != nil {
				fc := answers[i]
				if fc.Unchanged && pn.Size == st.Size {
					n.Blocks = pn.Blocks
					continue
				}
				if !fc.Unchanged && fc.Ranges != nil {
					f.only = blockRanges(fc.Ranges, st.Size, pn.Size, r.blockSize)
					f.base = pn.Blocks
				}
				toRead = append(toRead, f)
				continue
			}
			if r.sameFile(t.paths[i], st, pn, parent, cache, useCache) {
				n.Blocks = pn.Blocks // parent chunk indexes are registry indexes
				continue
			}
		}
		toRead = append(toRead, f)
	}
	return toRead, nil
}

// sameFile reports whether the regular file at path, now with stat st,
// still holds the content the parent records for it (node pn), judged by
// its stat alone: against the stat cache if useCache (it names the
// parent), else against the parent's own record of it.
func (r *Repo) sameFile(path string, st statEntry, pn *Node, parent *Manifest, cache *statCache, useCache bool) bool {
	if pn.Size != st.Size || pn.Mtime != st.Mtime {
		return false
	}
	if useCache {
		return cache.unchanged(path, st, r.racyWindow)
	}
	return pn.Ctime == st.Ctime && pn.Inode == st.Ino &&
		notRacy(statEntry{Mtime: pn.Mtime, Ctime: pn.Ctime}, parent.Started.UnixNano(), true, r.racyWindow)
}

// compactChunks rewrites every block reference from a registry index to
// an index into the manifest's own chunk table, which lists exactly the
// chunks the tree uses, and returns that table and its packs. It
// compacts the registry's tables in place: a volume's chunk table is its
// largest structure, and a second copy would double the peak.
func compactChunks(nodes []Node, read map[*Node]bool, reg *registry, stats *Stats) ([]ID, []Chunk) {
	newIdx := make([]int32, len(reg.chunks))
	for i := range nodes {
		if nodes[i].Type == TypeFile {
			for _, b := range nodes[i].Blocks {
				if b.Chunk != holeRef {
					newIdx[b.Chunk] = 1
				}
			}
		}
	}
	packIdx := make([]int32, len(reg.packs))
	for i := range packIdx {
		packIdx[i] = -1
	}
	packs := reg.packs[:0:0]
	chunks := reg.chunks[:0]
	for i := range reg.chunks {
		if newIdx[i] == 0 {
			newIdx[i] = -1
			continue
		}
		c := reg.chunks[i]
		if packIdx[c.Pack] < 0 {
			packIdx[c.Pack] = int32(len(packs))
			packs = append(packs, reg.packs[c.Pack])
		}
		c.Pack = uint32(packIdx[c.Pack])
		newIdx[i] = int32(len(chunks))
		chunks = append(chunks, c)
	}
	reg.chunks, reg.byID = nil, nil // their memory now belongs to the manifest
	for i := range nodes {
		n := &nodes[i]
		if n.Type != TypeFile {
			continue
		}
		// Files read this run own their block lists; reused files share
		// the parent manifest's, which must not change.
		out := n.Blocks[:0]
		if !read[n] {
			out = make([]BlockRef, 0, len(n.Blocks))
		}
		for _, b := range n.Blocks {
			if b.Chunk == holeRef {
				continue
			}
			ci := newIdx[b.Chunk]
			out = append(out, BlockRef{Index: b.Index, Chunk: uint32(ci)})
			stats.DataBytes += uint64(chunks[ci].RawLength)
		}
		n.Blocks = out
	}
	return packs, chunks
}
