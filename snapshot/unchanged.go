package snapshot

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// Unchanged reports whether the directory tree dir equals snapshot id of
// volume — names, types, metadata and content — as Create with
// SkipUnchanged would judge it, without reading file content or writing
// anything: the tree is walked, and every regular file must match, by its
// stat, the stat cache at statCache (if it names id) or else id's own
// record of it, outside the racy window. Only id's manifest object is
// loaded, not its chunk lists; its Info is returned when equal.
//
// false means "not shown equal", not "different": Create decides then.
// A writer that holds no lease can use it to skip a snapshot that would
// store nothing; Unchanged takes no part in publishing.
func (r *Repo) Unchanged(ctx context.Context, volume, dir, id, statCache string) (Info, bool, error) {
	if err := checkCacheOutside(statCache, dir); err != nil {
		return Info{}, false, err
	}
	type loaded struct {
		m   *Manifest
		err error
	}
	ch := make(chan loaded, 1)
	go func() {
		m, err := r.loadManifest(ctx, volume, id)
		ch <- loaded{m, err}
	}()
	root, err := openDir(dir)
	if err != nil {
		<-ch
		return Info{}, false, fmt.Errorf("volume %q: snapshot source: %w", volume, err)
	}
	defer unix.Close(root)
	cache := loadStatCache(statCache)
	t, err := walkTreeLive(ctx, root, false)
	l := <-ch
	if err != nil {
		return Info{}, false, fmt.Errorf("volume %q: scanning %s: %w", volume, dir, err)
	}
	if l.err != nil {
		return Info{}, false, l.err
	}
	if !r.sameTree(t, l.m, cache) {
		return Info{}, false, nil
	}
	return l.m.Info, true, nil
}

// sameTree: t equals parent node for node (Create keeps the walk order),
// with every file unchanged by sameFile.
func (r *Repo) sameTree(t *tree, parent *Manifest, cache *statCache) bool {
	if parent.BlockSize != r.blockSize || len(t.nodes) != len(parent.Nodes) {
		return false // a new block size re-chunks every file
	}
	useCache := cache != nil && cache.Snapshot == parent.ID
	for i := range t.nodes {
		a, b := &t.nodes[i], &parent.Nodes[i]
		if a.Parent != b.Parent || a.Name != b.Name || a.Type != b.Type || a.Mode != b.Mode || a.UID != b.UID ||
			a.GID != b.GID || a.Mtime != b.Mtime || a.Size != b.Size || a.Target != b.Target || a.Link != b.Link ||
			a.Rdev != b.Rdev || !xattrsEqual(a.Xattrs, b.Xattrs) {
			return false
		}
		if a.Type == TypeFile && !r.sameFile(t.paths[i], t.stat[i], b, parent, cache, useCache) {
			return false
		}
	}
	return true
}
