package snapshot

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/portvol/portvol/internal/volname"
)

// Limits on what a manifest may contain, so that a hostile or damaged
// manifest cannot make a reader allocate without bound (doc.go).
const (
	maxManifestSize = 256 << 20 // stored object, and decoded body
	maxHeaderSize   = 64 << 10
	maxNodes        = 4 << 20
	maxChunks       = 16 << 20
	maxPacks        = 1 << 20
	maxSymlinkLen   = 4095
	maxXattrs       = 1024 // per node
	maxXattrName    = 255
	maxXattrValue   = 64 << 10
	maxFileSize     = 1 << 44 // 16 TiB, ext4's limit
	maxPackObject   = 1 << 30
	maxIDLen        = 64
	maxHostLen      = 256
)

// Limits relative to the stored manifest, so that memory follows the bytes
// in the store, never the counts a manifest claims: a tiny object that
// decompresses into millions of identical nodes would otherwise cost
// gigabytes. Real manifests take 11-16 stored bytes per node (measured on
// /usr and a Go module cache) and at least 2.7 even for sequentially named
// empty files with coarse timestamps, and decompress 3-16 times; every
// chunk and pack has a 32-byte random ID, which does not compress.
const (
	maxBodyRatio   = 32      // decoded body per stored body byte
	bodySlack      = 1 << 20 // decoded body always allowed
	nodesSlack     = 64 << 10
	chunkStoredMin = 16 // stored bytes per chunk or pack, at least
	idSlack        = 1024
	refsPerByte    = 8 // block references per stored byte
	refsSlack      = 1 << 20
)

// bodyLimits bound a manifest body by the size of the stored manifest.
type bodyLimits struct {
	nodes, chunks, packs int
	refs                 int // block references left to decode
}

func limitsFor(stored int) *bodyLimits {
	return &bodyLimits{
		nodes:  min(maxNodes, stored+nodesSlack),
		chunks: min(maxChunks, stored/chunkStoredMin+idSlack),
		packs:  min(maxPacks, stored/chunkStoredMin+idSlack),
		refs:   refsPerByte*stored + refsSlack,
	}
}

// check reports what of m exceeds the limits, for encodeManifest: a
// manifest portvol writes must be one it can read.
func (l *bodyLimits) check(m *Manifest) error {
	refs := 0
	for i := range m.Nodes {
		refs += len(m.Nodes[i].Blocks)
	}
	switch {
	case len(m.Nodes) > l.nodes:
		return fmt.Errorf("%d entries", len(m.Nodes))
	case len(m.Chunks) > l.chunks || len(m.Packs) > l.packs:
		return fmt.Errorf("%d chunks in %d packs", len(m.Chunks), len(m.Packs))
	case refs > l.refs:
		return fmt.Errorf("%d block references", refs)
	}
	return nil
}

var manifestMagic = []byte("PVSM")

const manifestPrefixLen = 4 + 1 + 4 // magic, version, sealed header length

func manifestAD(part byte, key string, extra []byte) []byte {
	ad := append([]byte{}, manifestMagic...)
	ad = append(ad, FormatVersion, part)
	ad = append(ad, key...)
	return append(ad, extra...)
}

func encodeInfo(e *enc, in *Info, bodyLen int) {
	e.uvarint(FormatVersion)
	e.str(in.ID)
	e.str(in.Volume)
	e.str(in.Parent)
	e.str(in.Host)
	e.uvarint(in.Generation)
	e.varint(in.Started.UnixNano())
	e.varint(in.Finished.UnixNano())
	e.uvarint(uint64(in.BlockSize))
	s := &in.Stats
	e.uvarints(s.Files, s.Dirs, s.Symlinks, s.Hardlinks, s.Others, s.Skipped, s.Bytes, s.DataBytes,
		s.FilesRead, s.BytesRead, s.NewChunks, s.NewBytes, s.UploadedBytes)
	e.uvarint(uint64(bodyLen))
}

func decodeInfo(d *dec) (Info, int) {
	var in Info
	if v := d.uvarint(); d.err == nil && v != FormatVersion {
		if v > FormatVersion {
			d.err = fmt.Errorf("manifest format version %d (this portvol reads up to %d): %w", v, FormatVersion, ErrUnsupportedVersion)
		} else {
			d.fail("manifest format version %d", v)
		}
	}
	in.ID = d.str(maxIDLen, "id")
	in.Volume = d.str(maxIDLen*2, "volume")
	in.Parent = d.str(maxIDLen, "parent")
	in.Host = d.str(maxHostLen, "host")
	in.Generation = d.uvarint()
	in.Started = time.Unix(0, d.varint())
	in.Finished = time.Unix(0, d.varint())
	in.BlockSize = int(d.upTo(maxBlockSize, "block size"))
	s := &in.Stats
	for _, p := range []*uint64{&s.Files, &s.Dirs, &s.Symlinks, &s.Hardlinks, &s.Others, &s.Skipped, &s.Bytes, &s.DataBytes,
		&s.FilesRead, &s.BytesRead, &s.NewChunks, &s.NewBytes, &s.UploadedBytes} {
		*p = d.uvarint()
	}
	bodyLen := int(d.upTo(maxManifestSize, "body length"))
	if d.err == nil {
		switch {
		case !ValidSnapshotID(in.ID):
			d.fail("snapshot id %q", in.ID)
		case !volname.Valid(in.Volume):
			d.fail("volume name %q", in.Volume)
		case in.Parent != "" && !ValidSnapshotID(in.Parent):
			d.fail("parent id %q", in.Parent)
		case in.BlockSize < minBlockSize || in.BlockSize&(in.BlockSize-1) != 0:
			d.fail("block size %d", in.BlockSize)
		}
	}
	return in, bodyLen
}

func encodeBody(e *enc, m *Manifest) {
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
		if c.Compressed {
			flags |= 1
		}
		e.u8(flags)
	}
	e.uvarint(uint64(len(m.Nodes)))
	for i := range m.Nodes {
		n := &m.Nodes[i]
		if i > 0 {
			e.uvarint(uint64(n.Parent))
			e.str(n.Name)
		}
		e.u8(byte(n.Type))
		if n.Type == TypeHardlink {
			e.uvarint(uint64(n.Link))
			continue
		}
		e.uvarints(uint64(n.Mode), uint64(n.UID), uint64(n.GID))
		e.varint(n.Mtime)
		e.varint(n.Ctime)
		e.uvarint(n.Inode)
		switch n.Type {
		case TypeFile:
			e.uvarint(n.Size)
			e.uvarint(uint64(len(n.Blocks)))
			next, prev := uint64(0), int64(-1)
			for _, b := range n.Blocks {
				e.uvarint(b.Index - next)
				e.varint(int64(b.Chunk) - prev - 1)
				next, prev = b.Index+1, int64(b.Chunk)
			}
		case TypeSymlink:
			e.str(n.Target)
		case TypeCharDev, TypeBlockDev:
			e.uvarint(n.Rdev)
		}
		e.uvarint(uint64(len(n.Xattrs)))
		for _, x := range n.Xattrs {
			e.str(x.Name)
			e.bytes(x.Value)
		}
	}
}

// decodeBody decodes and validates the body: every reference points to
// something that exists, every name is one safe path component, every
// parent is an earlier directory, no name appears twice in a directory,
// every block lies inside its file and has the chunk length it must have.
//
// lim bounds the counts by the stored size (limitsFor), so a body that
// claims more than its stored bytes can hold fails before it allocates.
func decodeBody(d *dec, m *Manifest, lim *bodyLimits) {
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
		c.Compressed = flags&1 != 0
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
	nn := d.count(uint64(lim.nodes), 2, "node count")
	if d.err == nil && nn == 0 {
		d.fail("no root directory")
	}
	// nn is bounded by the stored size: allocate once, never grow.
	m.Nodes = make([]Node, 0, nn)
	for i := 0; i < nn && d.err == nil; i++ {
		n := Node{Parent: -1}
		if i > 0 {
			n.Parent = int32(d.upTo(uint64(i-1), "parent index"))
			n.Name = d.str(255, "name")
			if d.err != nil {
				return
			}
			if m.Nodes[n.Parent].Type != TypeDir {
				d.fail("node %d (%q): parent %d is a %s, not a directory", i, n.Name, n.Parent, m.Nodes[n.Parent].Type)
				return
			}
			if !validName(n.Name) {
				d.fail("node %d: unsafe name %q", i, n.Name)
				return
			}
		}
		n.Type = NodeType(d.u8())
		if d.err != nil {
			return
		}
		if i == 0 && n.Type != TypeDir {
			d.fail("root is a %s, not a directory", n.Type)
			return
		}
		if n.Type == TypeHardlink {
			n.Link = int32(d.upTo(uint64(max(i-1, 0)), "hardlink target"))
			if d.err == nil && m.Nodes[n.Link].Type != TypeFile {
				d.fail("node %d (%q): hardlink to a %s", i, n.Name, m.Nodes[n.Link].Type)
			}
			m.Nodes = append(m.Nodes, n)
			continue
		}
		n.Mode = uint32(d.upTo(07777, "mode"))
		n.UID = uint32(d.upTo(1<<32-1, "uid"))
		n.GID = uint32(d.upTo(1<<32-1, "gid"))
		n.Mtime = d.varint()
		n.Ctime = d.varint()
		n.Inode = d.uvarint()
		switch n.Type {
		case TypeDir, TypeFIFO:
		case TypeFile:
			decodeBlocks(d, m, &n, i, lim)
		case TypeSymlink:
			n.Target = d.str(maxSymlinkLen, "symlink target")
			if d.err == nil && (n.Target == "" || containsNUL(n.Target)) {
				d.fail("node %d (%q): bad symlink target", i, n.Name)
			}
		case TypeCharDev, TypeBlockDev:
			n.Rdev = d.uvarint()
		default:
			d.fail("node %d (%q): unknown type %d", i, n.Name, n.Type)
		}
		nx := d.count(maxXattrs, 2, "xattr count")
		if nx > 0 {
			n.Xattrs = make([]Xattr, nx)
		}
		for j := range n.Xattrs {
			n.Xattrs[j].Name = d.str(maxXattrName, "xattr name")
			n.Xattrs[j].Value = append([]byte(nil), d.bytes(maxXattrValue, "xattr value")...)
			if d.err == nil && (n.Xattrs[j].Name == "" || containsNUL(n.Xattrs[j].Name)) {
				d.fail("node %d (%q): bad xattr name", i, n.Name)
			}
		}
		m.Nodes = append(m.Nodes, n)
	}
	if d.err == nil {
		checkUniqueNames(d, m.Nodes)
	}
}

// checkUniqueNames fails if a name appears twice in one directory. It
// sorts node indexes (4 bytes per node) rather than filling a map of
// names, which would cost ten times as much.
func checkUniqueNames(d *dec, nodes []Node) {
	idx := make([]int32, 0, max(len(nodes)-1, 0))
	for i := 1; i < len(nodes); i++ {
		idx = append(idx, int32(i))
	}
	byDirName := func(a, b int32) int {
		if c := cmp.Compare(nodes[a].Parent, nodes[b].Parent); c != 0 {
			return c
		}
		return strings.Compare(nodes[a].Name, nodes[b].Name)
	}
	slices.SortFunc(idx, byDirName)
	for j := 1; j < len(idx); j++ {
		if byDirName(idx[j-1], idx[j]) == 0 {
			i := max(idx[j-1], idx[j])
			d.fail("node %d: name %q appears twice in its directory", i, nodes[i].Name)
			return
		}
	}
}

func decodeBlocks(d *dec, m *Manifest, n *Node, i int, lim *bodyLimits) {
	bs := m.BlockSize
	n.Size = d.upTo(maxFileSize, "file size")
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

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// encodeManifest returns the stored form of m under key (doc.go). A
// manifest portvol writes must be one it reads back, and what the decoder
// allows depends on how well this one compressed: it is checked against
// the limits after sealing.
func encodeManifest(m *Manifest, key string, c *cryptor) ([]byte, error) {
	out, bodyLen, zbodyLen, err := sealManifest(m, key, c)
	if err != nil {
		return nil, err
	}
	if err := limitsFor(len(out)).check(m); err != nil {
		return nil, fmt.Errorf("manifest of %d stored bytes holds %s, more than portvol reads from that many stored bytes: %w", len(out), err, ErrInvalid)
	}
	if bodyLen > maxBodyRatio*zbodyLen+bodySlack {
		return nil, fmt.Errorf("manifest body of %d bytes compresses to %d, more than %d times: %w", bodyLen, zbodyLen, maxBodyRatio, ErrInvalid)
	}
	return out, nil
}

// sealManifest encodes, compresses and seals m, unchecked.
func sealManifest(m *Manifest, key string, c *cryptor) (out []byte, bodyLen, zbodyLen int, err error) {
	var body enc
	encodeBody(&body, m)
	return sealBody(&m.Info, body.b, key, c)
}

// sealBody compresses and seals an encoded body under the header in.
func sealBody(in *Info, body []byte, key string, c *cryptor) (out []byte, bodyLen, zbodyLen int, err error) {
	if len(body) > maxManifestSize {
		return nil, 0, 0, fmt.Errorf("manifest of %d bytes exceeds the %d-byte limit: %w", len(body), maxManifestSize, ErrInvalid)
	}
	var head enc
	encodeInfo(&head, in, len(body))
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, 0, 0, err
	}
	zbody := zw.EncodeAll(body, nil)
	zw.Close()

	out = append([]byte{}, manifestMagic...)
	out = append(out, FormatVersion, 0, 0, 0, 0)
	out = c.seal(out, head.b, manifestAD('h', key, nil))
	binary.LittleEndian.PutUint32(out[5:9], uint32(len(out)-manifestPrefixLen))
	hsum := blake3.Sum256(head.b)
	out = c.seal(out, zbody, manifestAD('b', key, hsum[:]))
	return out, len(body), len(zbody), nil
}

// decodeManifestHeader reads the header from the first bytes of a stored
// manifest; it returns the header plaintext too (the body is bound to it).
func decodeManifestHeader(data []byte, key string, c *cryptor) (Info, []byte, int, int, error) {
	if len(data) < manifestPrefixLen || string(data[:4]) != string(manifestMagic) {
		return Info{}, nil, 0, 0, fmt.Errorf("not a manifest: %w", ErrCorrupt)
	}
	if data[4] != FormatVersion {
		if data[4] > FormatVersion {
			return Info{}, nil, 0, 0, fmt.Errorf("manifest format version %d (this portvol reads up to %d): %w", data[4], FormatVersion, ErrUnsupportedVersion)
		}
		return Info{}, nil, 0, 0, fmt.Errorf("manifest format version %d: %w", data[4], ErrCorrupt)
	}
	hl := int(binary.LittleEndian.Uint32(data[5:9]))
	if hl > maxHeaderSize {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header of %d bytes: %w", hl, ErrCorrupt)
	}
	end := manifestPrefixLen + hl
	if len(data) < end {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest truncated in its header: %w", ErrCorrupt)
	}
	plain, err := c.open(nil, data[manifestPrefixLen:end], manifestAD('h', key, nil))
	if err != nil {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header: %w", err)
	}
	d := dec{b: plain}
	in, bodyLen := decodeInfo(&d)
	if err := d.done("manifest header"); err != nil {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header: %w", err)
	}
	return in, plain, end, bodyLen, nil
}

// decodeManifest decodes and validates a stored manifest.
func decodeManifest(data []byte, key string, c *cryptor) (*Manifest, error) {
	in, head, end, bodyLen, err := decodeManifestHeader(data, key, c)
	if err != nil {
		return nil, err
	}
	hsum := blake3.Sum256(head)
	zbody, err := c.open(nil, data[end:], manifestAD('b', key, hsum[:]))
	if err != nil {
		return nil, fmt.Errorf("manifest body: %w", err)
	}
	if bodyLen > maxBodyRatio*len(zbody)+bodySlack {
		return nil, fmt.Errorf("manifest body claims %d bytes from %d stored, more than %d times: %w", bodyLen, len(zbody), maxBodyRatio, ErrCorrupt)
	}
	// Stream, so memory follows what really decompresses, not the claim.
	zr, err := zstd.NewReader(bytes.NewReader(zbody), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifestSize), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("manifest body: %w", ErrCorrupt)
	}
	defer zr.Close()
	// bodyLen is bounded by the stored size: read into a buffer of
	// exactly that size, never one grown by doubling.
	body := make([]byte, bodyLen)
	if _, err := io.ReadFull(zr, body); err != nil {
		return nil, fmt.Errorf("manifest body does not decompress to its %d bytes: %w", bodyLen, ErrCorrupt)
	}
	if n, _ := zr.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("manifest body decompresses to more than its %d bytes: %w", bodyLen, ErrCorrupt)
	}
	m := &Manifest{Info: in}
	d := dec{b: body}
	decodeBody(&d, m, limitsFor(len(data)))
	if err := d.done("manifest body"); err != nil {
		return nil, fmt.Errorf("manifest body: %w", err)
	}
	return m, nil
}
