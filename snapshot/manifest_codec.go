package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
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
func decodeBody(d *dec, m *Manifest) {
	bs := uint64(m.BlockSize)
	np := d.count(maxPacks, 32, "pack count")
	m.Packs = make([]ID, np)
	for i := range m.Packs {
		copy(m.Packs[i][:], d.fixed(32))
	}
	nc := d.count(maxChunks, 32+5, "chunk count")
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
	nn := d.count(maxNodes, 2, "node count")
	if d.err == nil && nn == 0 {
		d.fail("no root directory")
	}
	m.Nodes = make([]Node, 0, min(nn, 1<<16))
	names := make(map[string]struct{})
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
			k := strconv.Itoa(int(n.Parent)) + "/" + n.Name
			if _, dup := names[k]; dup {
				d.fail("node %d: name %q appears twice in its directory", i, n.Name)
				return
			}
			names[k] = struct{}{}
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
			decodeBlocks(d, m, &n, i)
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
}

func decodeBlocks(d *dec, m *Manifest, n *Node, i int) {
	bs := m.BlockSize
	n.Size = d.upTo(maxFileSize, "file size")
	nb := d.count(numBlocks(n.Size, bs), 2, "block count")
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

// encodeManifest returns the stored form of m under key (doc.go).
func encodeManifest(m *Manifest, key string, c *cryptor) ([]byte, error) {
	var body enc
	encodeBody(&body, m)
	if len(body.b) > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes exceeds the %d-byte limit: %w", len(body.b), maxManifestSize, ErrInvalid)
	}
	var head enc
	encodeInfo(&head, &m.Info, len(body.b))
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	zbody := zw.EncodeAll(body.b, nil)
	zw.Close()

	out := append([]byte{}, manifestMagic...)
	out = append(out, FormatVersion, 0, 0, 0, 0)
	out = c.seal(out, head.b, manifestAD('h', key, nil))
	binary.LittleEndian.PutUint32(out[5:9], uint32(len(out)-manifestPrefixLen))
	hsum := blake3.Sum256(head.b)
	out = c.seal(out, zbody, manifestAD('b', key, hsum[:]))
	return out, nil
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
	// Stream, so memory follows what really decompresses, not the claim.
	zr, err := zstd.NewReader(bytes.NewReader(zbody), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifestSize), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("manifest body: %w", ErrCorrupt)
	}
	defer zr.Close()
	body, err := io.ReadAll(io.LimitReader(zr, int64(bodyLen)+1))
	if err != nil || len(body) != bodyLen {
		return nil, fmt.Errorf("manifest body does not decompress to its %d bytes: %w", bodyLen, ErrCorrupt)
	}
	m := &Manifest{Info: in}
	d := dec{b: body}
	decodeBody(&d, m)
	if err := d.done("manifest body"); err != nil {
		return nil, fmt.Errorf("manifest body: %w", err)
	}
	return m, nil
}
