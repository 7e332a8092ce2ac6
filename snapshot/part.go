package snapshot

import (
	"fmt"
)

// List parts (format 2, doc.go "List parts"): the chunk list of span s of
// a file (blocks s*F up to (s+1)*F) is one record in a pack, named by the
// (keyed) BLAKE3 of its plaintext, so a span whose chunks did not change
// is the same part in the next snapshot and is not stored again.

// partEntry is one block of a decoded list part.
type partEntry struct {
	index uint64 // block index in the file
	chunk Chunk  // Pack indexes the part's own pack table
}

// partMaxSize bounds the plaintext of a list part: a pack table and F
// entries, every number at its longest.
func partMaxSize(bs int) int {
	return 10 + partFanout*32 + 10 + partFanout*(10+32+10+10+10+1)
}

// encodePart appends the list part of blocks (all inside one span of a
// file of manifest m, in increasing order) to e.
func encodePart(e *enc, m *Manifest, blocks []BlockRef, span uint64) {
	local := make(map[uint32]int, 2)
	var packs []uint32
	for _, b := range blocks {
		p := m.Chunks[b.Chunk].Pack
		if _, ok := local[p]; !ok {
			local[p] = len(packs)
			packs = append(packs, p)
		}
	}
	e.uvarint(uint64(len(packs)))
	for _, p := range packs {
		e.fixed(m.Packs[p][:])
	}
	e.uvarint(uint64(len(blocks)))
	next := span * partFanout
	for _, b := range blocks {
		c := &m.Chunks[b.Chunk]
		e.uvarint(b.Index - next)
		e.fixed(c.ID[:])
		e.uvarints(uint64(local[c.Pack]), uint64(c.Offset), uint64(c.Length))
		e.u8(byte(c.Codec))
		next = b.Index + 1
	}
}

// decodePart decodes and validates the list part of span of a file of
// the given size: every block lies in the span and the file, in order,
// with a known codec and a record that fits a pack. It returns the part's
// pack table and entries; each entry's RawLength is its block's length.
func decodePart(plain []byte, bs int, size, span uint64) ([]ID, []partEntry, error) {
	var s partScratch
	return s.decode(plain, bs, size, span)
}

// partScratch keeps decodePart's slices for the next part: a restore
// decodes one part per MiB of data, and fresh slices for each would be
// garbage as large as the chunk table. What it returns is valid until
// the next decode.
type partScratch struct {
	packs   []ID
	entries []partEntry
}

func (s *partScratch) decode(plain []byte, bs int, size, span uint64) ([]ID, []partEntry, error) {
	d := dec{b: plain}
	np := d.count(partFanout, 32, "part pack count")
	if cap(s.packs) < np {
		s.packs = make([]ID, partFanout)
	}
	packs := s.packs[:np]
	for i := range packs {
		copy(packs[i][:], d.fixed(32))
	}
	n := d.count(partFanout, 32+5, "part entry count")
	if cap(s.entries) < n {
		s.entries = make([]partEntry, 0, partFanout)
	}
	entries := s.entries[:0]
	first, end := span*partFanout, min((span+1)*partFanout, numBlocks(size, bs))
	next := first
	for range n {
		var e partEntry
		e.index = next + d.upTo(partFanout, "block gap")
		copy(e.chunk.ID[:], d.fixed(32))
		e.chunk.Pack = uint32(d.upTo(uint64(max(np-1, 0)), "chunk pack"))
		e.chunk.Offset = uint32(d.upTo(maxPackObject, "chunk offset"))
		e.chunk.Length = uint32(d.upTo(uint64(bs+sealOverhead+sumSize), "chunk length"))
		e.chunk.Codec = Codec(d.u8())
		if d.err != nil {
			break
		}
		switch {
		case e.index >= end:
			d.fail("block %d outside span %d of the file", e.index, span)
		case np == 0 || e.chunk.Length == 0:
			d.fail("block %d: empty record", e.index)
		case e.chunk.Codec > maxCodec:
			d.fail("block %d: unknown codec %d", e.index, e.chunk.Codec)
		case uint64(e.chunk.Offset)+uint64(e.chunk.Length) > maxPackObject:
			d.fail("block %d: beyond the largest pack", e.index)
		}
		e.chunk.RawLength = uint32(blockLen(size, e.index, bs))
		entries = append(entries, e)
		next = e.index + 1
	}
	if err := d.done("list part"); err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("empty list part: %w", ErrCorrupt)
	}
	return packs, entries, nil
}
