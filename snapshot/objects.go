package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/portvol/portvol/transfer"
)

// Objects calls fn with the key of every store object that snapshot id of
// volume needs, each once: its manifest, the packs of its list parts and
// the packs of its chunks. Garbage collection keeps what it names and
// needs to know nothing else of the format. Pack indexes are not needed
// by any snapshot (they only let an interrupted Create resume).
//
// It streams: it holds the tree and the list of parts (one per 64
// blocks), never all chunk references at once, and a set of the packs
// named so far. fn is called from one goroutine at a time. A snapshot
// that does not exist is ErrNotFound; one whose manifest or list parts
// are missing or damaged is ErrCorrupt, so that a caller never mistakes
// a half-read snapshot for one that needs little.
func (r *Repo) Objects(ctx context.Context, volume, id string, fn func(key string) error) error {
	if err := checkVolume(volume); err != nil {
		return err
	}
	if err := checkSnapshotID(id); err != nil {
		return err
	}
	key := manifestKey(volume, id)
	data, err := r.readSmall(ctx, key, maxManifestSize)
	if errors.Is(err, transfer.ErrNotExist) {
		return fmt.Errorf("volume %q: snapshot %s: %w", volume, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("volume %q: reading manifest %s: %w", volume, key, err)
	}
	m, err := decodeManifest(data, key, r.crypt)
	if err != nil {
		return fmt.Errorf("volume %q: manifest %s: %w", volume, key, err)
	}
	if m.ID != id || m.Volume != volume {
		return fmt.Errorf("volume %q: manifest %s describes %s of volume %q: %w", volume, key, m.ID, m.Volume, ErrCorrupt)
	}
	if err := fn(key); err != nil {
		return err
	}
	seen := make(map[ID]bool, len(m.Packs))
	var mu sync.Mutex
	emit := func(p ID) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[p] {
			return nil
		}
		seen[p] = true
		return fn(packKey(p))
	}
	for _, p := range m.Packs { // format 1: every pack; format 2: the parts' packs
		if err := emit(p); err != nil {
			return err
		}
	}
	if m.Version < 2 {
		return nil
	}
	err = r.forEachPart(ctx, m, func(i int, plain []byte, s *partScratch) error {
		p := &m.parts[i]
		packs, _, err := s.decode(plain, m.BlockSize, m.Nodes[p.Node].Size, p.Span)
		if err != nil {
			return fmt.Errorf("list part %s: %w", p.ID, err)
		}
		for _, pk := range packs {
			if err := emit(pk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("volume %q: snapshot %s: %w", volume, id, err)
	}
	return nil
}
