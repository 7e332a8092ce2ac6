package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
)

// maxReported bounds how many damaged objects one Verify error lists.
const maxReported = 50

// Verify reads back every pack that snapshot id of volume uses and checks
// that each pack still has the content its name (its hash) promises and
// that every chunk the snapshot needs decrypts, decompresses and matches
// its ID. The error names each damaged or missing object (up to 50) and
// wraps ErrCorrupt.
func (r *Repo) Verify(ctx context.Context, volume, id string) error {
	m, err := r.Load(ctx, volume, id)
	if err != nil {
		return err
	}
	byPack := make([][]uint32, len(m.Packs))
	for c := range m.Chunks {
		p := m.Chunks[c].Pack
		byPack[p] = append(byPack[p], uint32(c))
	}
	var mu sync.Mutex
	var errs []error
	report := func(err error) {
		mu.Lock()
		if len(errs) < maxReported {
			errs = append(errs, err)
		}
		mu.Unlock()
	}
	jobs := make(chan uint32)
	g, gctx := errgroup.WithContext(ctx)
	for range r.transfers {
		g.Go(func() error {
			cd, err := r.newChunkDecoder()
			if err != nil {
				return err
			}
			defer cd.close()
			cd.rehash = true
			for p := range jobs {
				if err := r.verifyPack(gctx, m, p, byPack[p], cd); err != nil {
					if !errors.Is(err, ErrCorrupt) {
						return err // the store failed, not the data
					}
					report(err)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for p := range m.Packs {
			select {
			case jobs <- uint32(p):
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	if err := cmp.Or(g.Wait(), context.Cause(ctx)); err != nil {
		return fmt.Errorf("volume %q: verifying snapshot %s: %w", volume, id, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("volume %q: snapshot %s is damaged: %w", volume, id, errors.Join(errs...))
	}
	return nil
}

func (r *Repo) verifyPack(ctx context.Context, m *Manifest, p uint32, chunks []uint32, cd *chunkDecoder) error {
	slices.SortFunc(chunks, func(a, b uint32) int { return int(m.Chunks[a].Offset) - int(m.Chunks[b].Offset) })
	h := blake3.New()
	fr := &fetchRange{pack: p, chunks: chunks}
	if err := r.readRange(ctx, m, fr, cd, h, func(uint32, []byte) error { return nil }, nil); err != nil {
		return err
	}
	var sum ID
	h.Sum(sum[:0])
	if sum != m.Packs[p] {
		return fmt.Errorf("pack %s: content does not match its name: %w", packKey(m.Packs[p]), ErrCorrupt)
	}
	return nil
}
