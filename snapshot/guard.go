package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/portvol/portvol/transfer"
)

// ErrCollected: a pack this snapshot would reference was deleted or is
// marked for deletion by a prune. Nothing was published; the next attempt
// uploads those chunks again.
var ErrCollected = errors.New("packs this snapshot reuses are being garbage-collected: nothing was published, retry")

// Fossils reports the store keys of the packs a garbage collector has
// marked for deletion and not yet deleted or revived (package prune keeps
// them; snapshot must not know how). Create never references such a pack.
type Fossils func(ctx context.Context) (map[string]bool, error)

// guardWindow bounds the time from the last look to the manifest write
// that needs no second look; prune's margin must be far longer.
const guardWindow = time.Minute

// guard keeps a Create from publishing a manifest that names a pack a
// concurrent prune deletes. Package prune's doc.go has the argument; the
// writer's half is: (1) reuse no pack that is marked for deletion or
// missing, and (2) immediately before writing the manifest, look again:
// the parent manifest still exists, every other pack it names exists, and
// none is marked. A prune deletes a pack only a full margin after its
// collection record is durable and after listing every manifest once more,
// so a manifest written within moments of a clean look is either seen by
// that listing (and its packs revived) or its writer saw the record.
type guard struct {
	r          *Repo
	volume     string
	parent     *Manifest
	fossils    map[string]bool
	dropParent bool
}

func (r *Repo) startGuard(ctx context.Context, volume string, parent *Manifest) (*guard, error) {
	g := &guard{r: r, volume: volume, parent: parent}
	if r.fossils == nil {
		return g, nil
	}
	f, err := r.fossils(ctx)
	if err != nil {
		return nil, fmt.Errorf("volume %q: reading the packs a prune is collecting: %w", volume, err)
	}
	g.fossils = f
	g.checkParent()
	return g, nil
}

// checkParent drops the parent when a pending collection lists one of
// the packs it knows of (again after its list parts are loaded: they
// name the packs of its chunks).
func (g *guard) checkParent() {
	if g.parent == nil {
		return
	}
	for _, p := range g.parent.Packs {
		if g.fossils[packKey(p)] {
			g.dropParent, g.parent = true, nil
			return
		}
	}
}

// usableIndexes drops leftover indexes whose pack is marked for deletion:
// their chunks are uploaded again. (readIndex drops those whose pack is
// gone.)
func (g *guard) usableIndexes(found []indexObject) []indexObject {
	if len(g.fossils) == 0 {
		return found
	}
	out := found[:0:0]
	for _, f := range found {
		if !g.fossils[packKey(f.pack)] {
			out = append(out, f)
		}
	}
	return out
}

// finish is the last look before m's manifest is written.
func (g *guard) finish(ctx context.Context, m *Manifest) error {
	inParent := map[ID]bool{}
	if g.parent != nil {
		if _, err := g.r.store.Stat(ctx, manifestKey(g.volume, g.parent.ID)); err != nil {
			if errors.Is(err, transfer.ErrNotExist) {
				return fmt.Errorf("parent snapshot %s was forgotten meanwhile: %w", g.parent.ID, ErrCollected)
			}
			return fmt.Errorf("checking parent snapshot %s: %w", g.parent.ID, err)
		}
		for _, p := range g.parent.Packs {
			inParent[p] = true
		}
	}
	var fossils map[string]bool
	if g.r.fossils != nil {
		var err error
		if fossils, err = g.r.fossils(ctx); err != nil {
			return fmt.Errorf("reading the packs a prune is collecting: %w", err)
		}
	}
	var check []ID
	for _, p := range m.Packs {
		if fossils[packKey(p)] {
			return fmt.Errorf("pack %s: %w", packKey(p), ErrCollected)
		}
		if !inParent[p] {
			check = append(check, p)
		}
	}
	// The parent's packs exist while the parent does (a prune keeps every
	// pack a listed manifest names); the others are checked one by one.
	return g.r.forEach(ctx, len(check), func(ctx context.Context, i int) error {
		k := packKey(check[i])
		if _, err := g.r.store.Stat(ctx, k); err != nil {
			if errors.Is(err, transfer.ErrNotExist) {
				return fmt.Errorf("pack %s is gone: %w", k, ErrCollected)
			}
			return fmt.Errorf("checking pack %s: %w", k, err)
		}
		return nil
	})
}

// withdraw deletes a manifest that must not stay (its last look failed),
// even if ctx was cancelled meanwhile, trying a few times: it was never
// published, and unless it goes, listings show a snapshot that may not
// verify.
func (r *Repo) withdraw(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for attempt := range 4 {
		if err = r.store.Delete(ctx, key); err == nil {
			return nil
		}
		select {
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		}
	}
	return err
}

// forEach runs fn for 0..n-1 with up to r.transfers at once; the first
// error stops it.
func (r *Repo) forEach(ctx context.Context, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, r.transfers)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
