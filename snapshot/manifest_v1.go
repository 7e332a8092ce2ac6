package snapshot

// Format 1 manifests: decoded into the same Manifest as format 2 ones. This
// package no longer writes them (the encoder lives in the tests, for the
// golden files and the fuzz targets).

// decodeBody decodes and validates the body: every reference points to
// something that exists, every name is one safe path component, every
// parent is an earlier directory, no name appears twice in a directory,
// every block lies inside its file and has the chunk length it must have.
func decodeBodyV1(d *dec, m *Manifest, lim *bodyLimits) {
	bs := uint64(m.BlockSize)
	np := d.count(uint64(lim.packs), 32, "pack count")
	m.Packs = make([]ID, np)
	for i := range m.Packs {
		copy(m.Packs[i][:], d.fixed(32))
	}
	nc := d.count(uint64(lim.chunks), 32+5, "chunk count")
	m.Chunks = make([]Chunk, nc)
	seen := make(map[ID]struct{}, nc)
	for i := range m.Chunks {
		c := &m.Chunks[i]
		copy(c.ID[:], d.fixed(32))
		c.Pack = uint32(d.upTo(uint64(max(np-1, 0)), "chunk pack"))
		c.Offset = uint32(d.upTo(maxPackObject, "chunk offset"))
		c.Length = uint32(d.upTo(bs+sealOverhead+sumSize, "chunk length"))
		c.RawLength = uint32(d.upTo(bs, "chunk raw length"))
		flags := d.u8()
		if flags&1 != 0 {
			c.Codec = CodecZstd
		}
		if d.err != nil {
			return
		}
		switch {
		case np == 0:
			d.fail("chunk %d without packs", i)
		case flags&^1 != 0:
			d.fail("chunk %d: unknown flags %#x", i, flags)
		case c.RawLength == 0 || c.Length == 0:
			d.fail("chunk %d: empty", i)
		case uint64(c.Offset)+uint64(c.Length) > maxPackObject:
			d.fail("chunk %d: beyond the largest pack", i)
		}
		if _, dup := seen[c.ID]; dup {
			d.fail("chunk %s listed twice", c.ID)
		}
		seen[c.ID] = struct{}{}
	}
	clear(seen)
	decodeNodes(d, m, lim, func(d *dec, m *Manifest, n *Node, i int) { decodeBlocks(d, m, n, i, lim) })
}

func decodeBlocks(d *dec, m *Manifest, n *Node, i int, lim *bodyLimits) {
	bs := m.BlockSize
	nb := d.count(min(numBlocks(n.Size, bs), uint64(max(lim.refs, 0))), 2, "block count")
	lim.refs -= nb
	if nb > 0 {
		n.Blocks = make([]BlockRef, nb)
	}
	next, prev := uint64(0), int64(-1)
	for j := range n.Blocks {
		idx := next + d.upTo(maxFileSize, "block gap")
		c := prev + 1 + d.varint()
		if d.err != nil {
			return
		}
		if idx >= numBlocks(n.Size, bs) || c < 0 || c >= int64(len(m.Chunks)) {
			d.fail("node %d (%q): block %d refers outside the file or the chunk table", i, n.Name, idx)
			return
		}
		if uint64(m.Chunks[c].RawLength) != blockLen(n.Size, idx, bs) {
			d.fail("node %d (%q): block %d has a chunk of %d bytes, want %d", i, n.Name, idx, m.Chunks[c].RawLength, blockLen(n.Size, idx, bs))
			return
		}
		n.Blocks[j] = BlockRef{Index: idx, Chunk: uint32(c)}
		next, prev = idx+1, c
	}
}
