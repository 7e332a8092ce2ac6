package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/portvol/portvol/transfer"
	"golang.org/x/sync/errgroup"
)

// loadParts fetches and decodes the list parts of a format 2 manifest and
// fills m.Chunks, m.Packs (after the part packs) and every file's Blocks.
func (r *Repo) loadParts(ctx context.Context, m *Manifest) error {
	packIdx := make(map[ID]uint32, len(m.Packs))
	for i, p := range m.Packs {
		packIdx[p] = uint32(i)
	}
	// Sized once from what the parts can hold (F entries, each at least
	// 37 bytes), so the largest table never regrows.
	n := 0
	for _, p := range m.parts {
		n += min(partFanout, int(p.Length)/37)
	}
	m.Chunks = make([]Chunk, 0, n)
	chunkIdx := newChunkIndex(n)
	blocks := make([][]BlockRef, len(m.parts))
	var mu sync.Mutex
	err := r.forEachPart(ctx, m, func(i int, plain []byte, s *partScratch) error {
		p := &m.parts[i]
		n := &m.Nodes[p.Node]
		packs, entries, err := s.decode(plain, m.BlockSize, n.Size, p.Span)
		if err != nil {
			return fmt.Errorf("list part %s of %s: %w", p.ID, n.Name, err)
		}
		out := make([]BlockRef, len(entries))
		mu.Lock()
		defer mu.Unlock()
		for j, e := range entries {
			pi, ok := packIdx[packs[e.chunk.Pack]]
			if !ok {
				pi = uint32(len(m.Packs))
				m.Packs = append(m.Packs, packs[e.chunk.Pack])
				packIdx[packs[e.chunk.Pack]] = pi
			}
			ci, ok := chunkIdx.get(&e.chunk.ID, m.Chunks)
			if !ok {
				c := e.chunk
				c.Pack = pi
				ci = int32(len(m.Chunks))
				m.Chunks = append(m.Chunks, c)
				chunkIdx.put(&c.ID, ci)
			} else if m.Chunks[ci].RawLength != e.chunk.RawLength {
				return fmt.Errorf("chunk %s used with lengths %d and %d: %w", e.chunk.ID, m.Chunks[ci].RawLength, e.chunk.RawLength, ErrCorrupt)
			}
			out[j] = BlockRef{Index: e.index, Chunk: uint32(ci)}
		}
		blocks[i] = out
		return nil
	})
	if err != nil {
		return err
	}
	count := make([]int, len(m.Nodes))
	for i, p := range m.parts {
		count[p.Node] += len(blocks[i])
	}
	for i, p := range m.parts {
		n := &m.Nodes[p.Node]
		if n.Blocks == nil {
			n.Blocks = make([]BlockRef, 0, count[p.Node])
		}
		n.Blocks = append(n.Blocks, blocks[i]...)
		blocks[i] = nil
	}
	return nil
}

// forEachPart fetches every list part of m (ranged reads of adjacent
// parts coalesced) and calls fn with each verified plaintext, from
// several goroutines.
func (r *Repo) forEachPart(ctx context.Context, m *Manifest, fn func(i int, plain []byte, s *partScratch) error) error {
	order := make([]uint32, len(m.parts))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int {
		pa, pb := &m.parts[a], &m.parts[b]
		if pa.Pack != pb.Pack {
			return int(pa.Pack) - int(pb.Pack)
		}
		return int(pa.Offset) - int(pb.Offset)
	})
	var ranges []fetchRange
	for _, i := range order {
		p := &m.parts[i]
		off, end := uint64(p.Offset), uint64(p.Offset)+uint64(p.Length)
		if n := len(ranges); n > 0 {
			last := &ranges[n-1]
			if last.pack == p.Pack && off >= last.off && off <= last.end+maxRangeGap && end-last.off <= maxRangeSize {
				last.end = max(last.end, end)
				last.chunks = append(last.chunks, i)
				continue
			}
		}
		ranges = append(ranges, fetchRange{pack: p.Pack, off: off, end: end, chunks: []uint32{i}})
	}
	jobs := make(chan *fetchRange)
	g, gctx := errgroup.WithContext(ctx)
	for range r.transfers {
		g.Go(func() error {
			h := r.crypt.newHasher()
			var buf []byte
			var scratch partScratch
			id := make([]byte, 32) // see sealChunk
			for fr := range jobs {
				key := packKey(m.Packs[fr.pack])
				data, err := r.readRangeBytes(gctx, key, fr.off, fr.end, buf)
				buf = data
				if err != nil {
					return err // cancels gctx: the dispatcher stops
				}
				for _, i := range fr.chunks {
					p := &m.parts[i]
					rec := data[uint64(p.Offset)-fr.off : uint64(p.Offset)-fr.off+uint64(p.Length)]
					copy(id, p.ID[:])
					plain, err := r.crypt.openChunk(nil, rec, id)
					if err == nil && sumID(h, plain) != p.ID {
						err = fmt.Errorf("content does not match its id: %w", ErrCorrupt)
					}
					if err != nil {
						return fmt.Errorf("pack %s: list part %s at offset %d: %w", key, p.ID, p.Offset, err)
					}
					if err := fn(int(i), plain, &scratch); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for i := range ranges {
			select {
			case jobs <- &ranges[i]:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	return cmp.Or(g.Wait(), context.Cause(ctx))
}

// readRangeBytes reads bytes [off, end) of the object key into buf's
// memory if it is large enough.
func (r *Repo) readRangeBytes(ctx context.Context, key string, off, end uint64, buf []byte) ([]byte, error) {
	rc, err := r.store.Get(ctx, key, int64(off), int64(end-off))
	if err != nil {
		if errors.Is(err, transfer.ErrNotExist) {
			return nil, fmt.Errorf("pack %s is missing: %w", key, errors.Join(ErrCorrupt, err))
		}
		return nil, fmt.Errorf("reading pack %s: %w", key, err)
	}
	defer rc.Close()
	data := buf[:0]
	if uint64(cap(data)) < end-off {
		data = make([]byte, end-off)
	}
	data = data[:end-off]
	if _, err := io.ReadFull(rc, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("pack %s is truncated at %d: %w", key, off, ErrCorrupt)
		}
		return nil, fmt.Errorf("reading pack %s: %w", key, err)
	}
	return data, nil
}
