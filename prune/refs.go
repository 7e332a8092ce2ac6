package prune

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// refSet is what every manifest in the store keeps alive: packs and index
// prefixes. It is the only thing prune holds per object; manifests stream
// through, a few at a time.
type refSet struct {
	mu        sync.Mutex
	keys      map[string]struct{}
	prefixes  map[string]struct{}
	manifests int
}

func (s *refSet) has(key string) bool { _, ok := s.keys[key]; return ok }

// prefixed reports whether key lies under a referenced prefix.
func (s *refSet) prefixed(key string) bool {
	i := strings.LastIndexByte(key, '/')
	_, ok := s.prefixes[key[:i+1]]
	return ok
}

type manifestJob struct {
	stored, volume, id string
}

// scanRefs lists every manifest, live and in the trash, and collects what
// each references. A manifest forgotten while the scan runs is skipped; any
// other failure to read one stops the scan (its references are unknown).
func scanRefs(ctx context.Context, repo *snapshot.Repo, store transfer.ObjectStore, workers int, progress func(int)) (*refSet, error) {
	set := &refSet{keys: map[string]struct{}{}, prefixes: map[string]struct{}{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan manifestJob, workers)
	errc := make(chan error, workers+1)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := set.add(ctx, repo, j); err != nil {
					errc <- err
					cancel()
					for range jobs {
					}
					return
				}
				if progress != nil {
					set.mu.Lock()
					n := set.manifests
					set.mu.Unlock()
					progress(n)
				}
			}
		}()
	}
	send := func(j manifestJob) error {
		select {
		case jobs <- j:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	lerr := snapshot.Objects(ctx, store, snapshot.KindManifest, func(o snapshot.Object) error {
		return send(manifestJob{o.Key, o.Volume, o.Snapshot})
	})
	if lerr == nil {
		lerr = store.List(ctx, catalog.TrashPrefix, func(oi transfer.ObjectInfo) error {
			_, _, orig, ok := catalog.ParseTrashKey(oi.Key)
			if !ok {
				return nil
			}
			if o := snapshot.Classify(orig); o.Kind == snapshot.KindManifest {
				return send(manifestJob{oi.Key, o.Volume, o.Snapshot})
			}
			return nil
		})
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, fmt.Errorf("listing manifests: %w", lerr)
	}
	return set, nil
}

func (s *refSet) add(ctx context.Context, repo *snapshot.Repo, j manifestJob) error {
	var refs []snapshot.Reference
	err := repo.ReferencesAt(ctx, j.stored, j.volume, j.id, func(r snapshot.Reference) error {
		refs = append(refs, r)
		return nil
	})
	if errors.Is(err, snapshot.ErrNotFound) {
		return nil // forgotten, or moved to or from the trash, meanwhile
	}
	if err != nil {
		return fmt.Errorf("%w; nothing was deleted: its references are unknown (verify the snapshot, forget it if it is damaged)", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests++
	for _, r := range refs {
		if r.Prefix {
			s.prefixes[r.Key] = struct{}{}
		} else {
			s.keys[r.Key] = struct{}{}
		}
	}
	return nil
}
