package snapshot

import (
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
	// Progress, if set, is called from one goroutine a few times a second.
	Progress func(Progress)
	// SkipUnchanged writes nothing when the tree is identical to Parent's
	// (same nodes, metadata and chunks): Create then returns the parent's
	// manifest with Unchanged set, and there is nothing to publish.
	SkipUnchanged bool
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
		if parent, err = r.Load(ctx, volume, opts.Parent); err != nil {
			return nil, fmt.Errorf("volume %q: parent snapshot: %w", volume, err)
		}
	}
	g, err := r.startGuard(ctx, volume, parent)
	if err != nil {
		return nil, err
	}
	if g.dropParent {
		parent = nil // its packs are being collected: read everything again
	}

	prog := startProgress(opts.Progress, "scan")
	defer prog.finish()
	t, err := walkTree(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("volume %q: scanning %s: %w", volume, dir, err)
	}
	toRead := r.reuseUnchanged(t, parent, loadStatCache(opts.StatCache))

	reg := newRegistry(parent)
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

	m := &Manifest{Info: Info{
		ID: newSnapshotID(started), Volume: volume, Parent: opts.Parent, Host: opts.Host,
		Generation: opts.Generation, Started: started, BlockSize: r.blockSize, Stats: t.stats,
	}}
	m.Nodes = t.nodes
	m.Packs, m.Chunks = compactChunks(m.Nodes, reg, &m.Stats)
	m.Finished = r.now()
	if opts.SkipUnchanged && sameTree(parent, m) {
		parent.Unchanged = true
		return parent, nil
	}

	// The stat cache goes first: if publishing fails, it names a snapshot
	// that does not exist and is ignored.
	if opts.StatCache != "" {
		sc := &statCache{Snapshot: m.ID, Source: sourceCreate, Taken: started.UnixNano(), Entries: make(map[string]statEntry)}
		for i, n := range t.nodes {
			if n.Type == TypeFile {
				sc.Entries[t.paths[i]] = t.stat[i]
			}
		}
		if err := writeStatCache(opts.StatCache, sc); err != nil {
			return nil, fmt.Errorf("volume %q: %w", volume, err)
		}
	}
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
	if _, err := r.store.PutIfAbsent(ctx, key, data); err != nil {
		if errors.Is(err, transfer.ErrPrecondition) {
			return nil, fmt.Errorf("volume %q: snapshot %s already exists; retry: %w", volume, m.ID, err)
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

// reuseUnchanged gives every file that is unchanged since the parent the
// parent's block list, and returns the files that must be read.
func (r *Repo) reuseUnchanged(t *tree, parent *Manifest, cache *statCache) []*readFile {
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
	useCache := cache != nil && parent != nil && cache.Snapshot == parent.ID
	var toRead []*readFile
	for i := range t.nodes {
		n := &t.nodes[i]
		if n.Type != TypeFile {
			continue
		}
		st := t.stat[i]
		if pi, ok := byPath[t.paths[i]]; ok {
			pn := &parent.Nodes[pi]
			same := pn.Size == st.Size && pn.Mtime == st.Mtime
			if useCache {
				same = same && cache.unchanged(t.paths[i], st, r.racyWindow)
			} else {
				same = same && pn.Ctime == st.Ctime && pn.Inode == st.Ino &&
					notRacy(statEntry{Mtime: pn.Mtime, Ctime: pn.Ctime}, parent.Started.UnixNano(), true, r.racyWindow)
			}
			if same {
				n.Blocks = pn.Blocks // parent chunk indexes are registry indexes
				continue
			}
		}
		toRead = append(toRead, &readFile{node: n, path: t.paths[i], st: st, fd: -1})
	}
	return toRead
}

// compactChunks rewrites every block reference from a registry index to
// an index into the manifest's own chunk table, which lists exactly the
// chunks the tree uses, and returns that table and its packs.
func compactChunks(nodes []Node, reg *registry, stats *Stats) ([]ID, []Chunk) {
	chunkMap := make([]int32, len(reg.chunks))
	for i := range chunkMap {
		chunkMap[i] = -1
	}
	packMap := make([]int32, len(reg.packs))
	for i := range packMap {
		packMap[i] = -1
	}
	var packs []ID
	var chunks []Chunk
	for i := range nodes {
		n := &nodes[i]
		if n.Type != TypeFile {
			continue
		}
		out := n.Blocks[:0:0]
		for _, b := range n.Blocks {
			if b.Chunk == holeRef {
				continue
			}
			ci := chunkMap[b.Chunk]
			if ci < 0 {
				c := reg.chunks[b.Chunk]
				pi := packMap[c.Pack]
				if pi < 0 {
					packs = append(packs, reg.packs[c.Pack])
					pi = int32(len(packs) - 1)
					packMap[c.Pack] = pi
				}
				c.Pack = uint32(pi)
				chunks = append(chunks, c)
				ci = int32(len(chunks) - 1)
				chunkMap[b.Chunk] = ci
			}
			out = append(out, BlockRef{Index: b.Index, Chunk: uint32(ci)})
			stats.DataBytes += uint64(chunks[ci].RawLength)
		}
		n.Blocks = out
	}
	return packs, chunks
}
