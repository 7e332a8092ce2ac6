package snapshot

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/portvol/portvol/transfer"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
)

// loadParts fetches and decodes the list parts of a format 2 manifest and
// fills m.Chunks, m.Packs (after the part packs) and every file's Blocks.
func (r *Repo) loadParts(ctx context.Context, m *Manifest) error {
	return r.loadSomeParts(ctx, m, nil)
}

// loadSomeParts is loadParts for the parts i with want[i] (all of them
// when want is nil): m.Chunks then holds the chunks of those parts only,
// and a file's Blocks only the blocks of its spans that were loaded.
// An in-place restore needs no more than the spans that differ.
func (r *Repo) loadSomeParts(ctx context.Context, m *Manifest, want []bool) error {
	packIdx := make(map[ID]uint32, len(m.Packs))
	for i, p := range m.Packs {
		packIdx[p] = uint32(i)
	}
	// Sized once from what the parts can hold (F entries, each at least
	// 37 bytes), so the largest table never regrows.
	n := 0
	for i, p := range m.parts {
		if want == nil || want[i] {
			n += min(partFanout, int(p.Length)/37)
		}
	}
	m.Chunks = make([]Chunk, 0, n)
	chunkIdx := newChunkIndex(n)
	blocks := make([][]BlockRef, len(m.parts))
	var mu sync.Mutex
	err := r.forEachPart(ctx, m, want, func(i int, plain []byte, s *partScratch) error {
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

// forEachPart fetches every list part i of m with want[i] (every part
// when want is nil; ranged reads of adjacent parts coalesced) and calls
// fn with each verified plaintext, from several goroutines.
func (r *Repo) forEachPart(ctx context.Context, m *Manifest, want []bool, fn func(i int, plain []byte, s *partScratch) error) error {
	order := make([]uint32, 0, len(m.parts))
	for i := range m.parts {
		if want == nil || want[i] {
			order = append(order, uint32(i))
		}
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
	// The keys are taken now: fn may append to m.Packs while ranges are
	// read (loadParts does), so the workers must not read it.
	keys := make([]string, len(ranges))
	for i := range ranges {
		keys[i] = packKey(m.Packs[ranges[i].pack])
	}
	type job struct {
		fr  *fetchRange
		key string
	}
	jobs := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	for range r.transfers {
		g.Go(func() error {
			w := &partReader{r: r, h: r.crypt.newHasher(), id: make([]byte, 32)}
			for j := range jobs {
				if err := w.read(gctx, m, j.key, j.fr, fn); err != nil {
					return err // cancels gctx: the dispatcher stops
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for i := range ranges {
			select {
			case jobs <- job{&ranges[i], keys[i]}:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	return cmp.Or(g.Wait(), context.Cause(ctx))
}

// partReader streams the list parts of one range of a pack through
// buffers of its own: a restore reads one part per MiB of data, and
// fresh buffers for each would be garbage as large as the chunk table.
type partReader struct {
	r       *Repo
	h       *blake3.Hasher
	id      []byte // see sealChunk
	rec     []byte
	open    []byte
	scratch partScratch
	br      *bufio.Reader // see chunkDecoder.br
}

func (w *partReader) read(ctx context.Context, m *Manifest, key string, fr *fetchRange, fn func(int, []byte, *partScratch) error) error {
	rc, err := w.r.store.Get(ctx, key, int64(fr.off), int64(fr.end-fr.off))
	if err != nil {
		if errors.Is(err, transfer.ErrNotExist) {
			return fmt.Errorf("pack %s is missing: %w", key, errors.Join(ErrCorrupt, err))
		}
		return fmt.Errorf("reading pack %s: %w", key, err)
	}
	defer rc.Close()
	if w.br == nil {
		w.br = bufio.NewReaderSize(rc, rangeReadBuf)
	} else {
		w.br.Reset(rc)
	}
	defer w.br.Reset(nil)
	body := w.br
	pos := fr.off
	var plain []byte
	last := -1
	for _, i := range fr.chunks {
		p := &m.parts[i]
		if last >= 0 && m.parts[last].Offset == p.Offset && m.parts[last].Length == p.Length && m.parts[last].ID == p.ID {
			// The same part used twice: reuse what was read.
			if err := fn(int(i), plain, &w.scratch); err != nil {
				return err
			}
			continue
		}
		if uint64(p.Offset) < pos {
			return fmt.Errorf("pack %s: list parts overlap at offset %d: %w", key, p.Offset, ErrCorrupt)
		}
		if gap := int64(uint64(p.Offset) - pos); gap > 0 {
			if _, err := io.CopyN(io.Discard, body, gap); err != nil {
				return fmt.Errorf("pack %s is truncated at %d: %w", key, pos, errors.Join(ErrCorrupt, err))
			}
		}
		if cap(w.rec) < int(p.Length) {
			w.rec = make([]byte, p.Length)
		}
		rec := w.rec[:p.Length]
		if _, err := io.ReadFull(body, rec); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("pack %s is truncated at %d: %w", key, p.Offset, ErrCorrupt)
			}
			return fmt.Errorf("reading pack %s: %w", key, err)
		}
		pos = uint64(p.Offset) + uint64(p.Length)
		copy(w.id, p.ID[:])
		plain, err = w.r.crypt.openChunk(w.open[:0], rec, w.id)
		if err == nil {
			if w.r.crypt.encrypted() {
				w.open = plain[:0] // keep the buffer AES-GCM grew
			}
			if sumID(w.h, plain) != p.ID {
				err = fmt.Errorf("content does not match its id: %w", ErrCorrupt)
			}
		}
		if err != nil {
			return fmt.Errorf("pack %s: list part %s at offset %d: %w", key, p.ID, p.Offset, err)
		}
		last = int(i)
		if err := fn(int(i), plain, &w.scratch); err != nil {
			return err
		}
	}
	return nil
}
