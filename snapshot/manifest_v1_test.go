package snapshot

func encodeBodyV1(e *enc, m *Manifest) {
	e.uvarint(uint64(len(m.Packs)))
	for _, p := range m.Packs {
		e.fixed(p[:])
	}
	e.uvarint(uint64(len(m.Chunks)))
	for i := range m.Chunks {
		c := &m.Chunks[i]
		e.fixed(c.ID[:])
		e.uvarints(uint64(c.Pack), uint64(c.Offset), uint64(c.Length), uint64(c.RawLength))
		var flags byte
		if c.Codec == CodecZstd {
			flags |= 1
		}
		e.u8(flags)
	}
	encodeNodes(e, m, func(e *enc, i int) {
		n := &m.Nodes[i]
		e.uvarint(uint64(len(n.Blocks)))
		next, prev := uint64(0), int64(-1)
		for _, b := range n.Blocks {
			e.uvarint(b.Index - next)
			e.varint(int64(b.Chunk) - prev - 1)
			next, prev = b.Index+1, int64(b.Chunk)
		}
	})
}

// encodeManifestV1 is the format 1 encoder, kept for the golden files and
// the fuzz targets of the format 1 decoder.
func encodeManifestV1(m *Manifest, key string, c *cryptor) ([]byte, error) {
	m.Version = 1
	return sealManifest(m, key, c, encodeBodyV1)
}
