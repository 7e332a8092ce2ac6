package snapshot

import "sync"

// registry is the set of chunks a Create run can refer to: the parent's,
// those in packs left by interrupted runs, and the ones this run uploads.
// Indexes are stable; the parent's chunks keep their parent indexes.
type registry struct {
	mu     sync.Mutex
	chunks []Chunk
	byID   map[ID]int32
	packs  []ID            // zero until the pack is uploaded
	avoid  map[string]bool // pack keys a prune is collecting (guard.go)
}

func newRegistry(parent *Manifest) *registry {
	r := &registry{byID: make(map[ID]int32)}
	if parent != nil {
		r.chunks = append(r.chunks, parent.Chunks...)
		r.packs = append(r.packs, parent.Packs...)
		for i, c := range parent.Chunks {
			r.byID[c.ID] = int32(i)
		}
	}
	return r
}

// addIndex makes the chunks of an already uploaded pack known.
func (r *registry) addIndex(ix *packIndex) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := int32(-1)
	for _, c := range ix.Chunks {
		if _, ok := r.byID[c.ID]; ok {
			continue
		}
		if p < 0 {
			r.packs = append(r.packs, ix.Pack)
			p = int32(len(r.packs) - 1)
		}
		c.Pack = uint32(p)
		r.chunks = append(r.chunks, c)
		r.byID[c.ID] = int32(len(r.chunks) - 1)
	}
}

// claim returns the index of chunk id, and whether the caller must upload
// it (it was not known before).
func (r *registry) claim(id ID, raw uint32) (int32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.byID[id]; ok {
		return i, false
	}
	r.chunks = append(r.chunks, Chunk{ID: id, RawLength: raw})
	i := int32(len(r.chunks) - 1)
	r.byID[id] = i
	return i, true
}

func (r *registry) place(i int32, c Chunk) {
	r.mu.Lock()
	r.chunks[i] = c
	r.mu.Unlock()
}

func (r *registry) newPack() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packs = append(r.packs, ID{})
	return int32(len(r.packs) - 1)
}

func (r *registry) setPack(i int32, id ID) {
	r.mu.Lock()
	r.packs[i] = id
	r.mu.Unlock()
}
