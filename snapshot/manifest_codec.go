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

// partFanout is F, the number of blocks one list part covers (doc.go).
const partFanout = 64

func manifestAD(version byte, part byte, key string, extra []byte) []byte {
	ad := append([]byte{}, manifestMagic...)
	ad = append(ad, version, part)
	ad = append(ad, key...)
	return append(ad, extra...)
}

func encodeInfo(e *enc, in *Info, bodyLen int) {
	e.uvarint(uint64(in.Version))
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

// checkVersion accepts the manifest versions this package reads.
func checkVersion(v uint64) error {
	switch {
	case v == 1 || v == FormatVersion:
		return nil
	case v > FormatVersion:
		return fmt.Errorf("manifest format version %d (this portvol reads up to %d): %w", v, FormatVersion, ErrUnsupportedVersion)
	}
	return fmt.Errorf("manifest format version %d: %w", v, ErrCorrupt)
}

func decodeInfo(d *dec) (Info, int) {
	var in Info
	v := d.uvarint()
	if err := checkVersion(v); d.err == nil && err != nil {
		d.err = err
	}
	in.Version = int(v)
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
	lo := minBlockSize
	if in.Version == 1 {
		lo = minBlockSizeV1
	}
	if d.err == nil {
		switch {
		case !ValidSnapshotID(in.ID):
			d.fail("snapshot id %q", in.ID)
		case !volname.Valid(in.Volume):
			d.fail("volume name %q", in.Volume)
		case in.Parent != "" && !ValidSnapshotID(in.Parent):
			d.fail("parent id %q", in.Parent)
		case in.BlockSize < lo || in.BlockSize&(in.BlockSize-1) != 0:
			d.fail("block size %d", in.BlockSize)
		}
	}
	return in, bodyLen
}

// encodeNodes appends the node list shared by both versions; file
// appends the content of a file node after its size.
func encodeNodes(e *enc, m *Manifest, file func(e *enc, i int)) {
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
			file(e, i)
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

// encodeBody appends a format 2 body: the packs holding list parts, then
// the nodes, each file with its part references. m.parts are in node
// order and index m.Packs.
func encodeBody(e *enc, m *Manifest) {
	used := make([]int32, len(m.Packs))
	for i := range used {
		used[i] = -1
	}
	var packs []ID
	for _, p := range m.parts {
		if used[p.Pack] < 0 {
			used[p.Pack] = int32(len(packs))
			packs = append(packs, m.Packs[p.Pack])
		}
	}
	e.uvarint(uint64(len(packs)))
	for _, p := range packs {
		e.fixed(p[:])
	}
	next := 0
	encodeNodes(e, m, func(e *enc, i int) {
		first := next
		for next < len(m.parts) && m.parts[next].Node == int32(i) {
			next++
		}
		e.uvarint(uint64(next - first))
		span := uint64(0)
		for _, p := range m.parts[first:next] {
			e.uvarint(p.Span - span)
			e.fixed(p.ID[:])
			e.uvarints(uint64(used[p.Pack]), uint64(p.Offset), uint64(p.Length))
			span = p.Span + 1
		}
	})
}

// decodeBody decodes a format 2 body into m.Packs (the packs of list
// parts), m.Nodes (files without blocks yet) and m.parts.
func decodeBody(d *dec, m *Manifest) {
	np := d.count(maxPacks, 32, "pack count")
	m.Packs = make([]ID, np)
	for i := range m.Packs {
		copy(m.Packs[i][:], d.fixed(32))
	}
	maxPart := uint64(partMaxSize(m.BlockSize) + sealOverhead + sumSize)
	decodeNodes(d, m, func(d *dec, m *Manifest, n *Node, i int) {
		spans := (numBlocks(n.Size, m.BlockSize) + partFanout - 1) / partFanout
		k := d.count(spans, 32+4, "part count")
		next := uint64(0)
		for range k {
			p := partRef{Node: int32(i)}
			p.Span = next + d.upTo(maxFileSize, "span gap")
			copy(p.ID[:], d.fixed(32))
			p.Pack = uint32(d.upTo(uint64(max(np-1, 0)), "part pack"))
			p.Offset = uint32(d.upTo(maxPackObject, "part offset"))
			p.Length = uint32(d.upTo(maxPart, "part length"))
			if d.err != nil {
				return
			}
			switch {
			case np == 0 || p.Length == 0:
				d.fail("node %d (%q): part without pack or bytes", i, n.Name)
			case p.Span >= spans:
				d.fail("node %d (%q): part %d outside the file", i, n.Name, p.Span)
			case uint64(p.Offset)+uint64(p.Length) > maxPackObject:
				d.fail("node %d (%q): part beyond the largest pack", i, n.Name)
			}
			m.parts = append(m.parts, p)
			next = p.Span + 1
		}
	})
	if d.err == nil && len(m.parts) > maxChunks {
		d.fail("%d list parts", len(m.parts))
	}
}

// decodeNodes decodes and validates the node list shared by both
// versions: every name is one safe path component, every parent is an
// earlier directory, no name appears twice in a directory. file decodes
// the content of a file node after its size.
func decodeNodes(d *dec, m *Manifest, file func(d *dec, m *Manifest, n *Node, i int)) {
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
			n.Size = d.upTo(maxFileSize, "file size")
			file(d, m, &n, i)
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

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// encodeManifest returns the stored form of m under key (doc.go): the
// format 2 encoding.
func encodeManifest(m *Manifest, key string, c *cryptor) ([]byte, error) {
	m.Version = FormatVersion
	return sealManifest(m, key, c, encodeBody)
}

func sealManifest(m *Manifest, key string, c *cryptor, body func(*enc, *Manifest)) ([]byte, error) {
	var b enc
	body(&b, m)
	if len(b.b) > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes exceeds the %d-byte limit: %w", len(b.b), maxManifestSize, ErrInvalid)
	}
	var head enc
	encodeInfo(&head, &m.Info, len(b.b))
	// A small window: bodies are list-part references and a tree, and a
	// default window would cost more memory than the body.
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	zbody := zw.EncodeAll(b.b, nil)
	zw.Close()

	v := byte(m.Version)
	out := append([]byte{}, manifestMagic...)
	out = append(out, v, 0, 0, 0, 0)
	out = c.seal(out, head.b, manifestAD(v, 'h', key, nil))
	binary.LittleEndian.PutUint32(out[5:9], uint32(len(out)-manifestPrefixLen))
	hsum := blake3.Sum256(head.b)
	out = c.seal(out, zbody, manifestAD(v, 'b', key, hsum[:]))
	return out, nil
}

// decodeManifestHeader reads the header from the first bytes of a stored
// manifest; it returns the header plaintext too (the body is bound to it).
func decodeManifestHeader(data []byte, key string, c *cryptor) (Info, []byte, int, int, error) {
	if len(data) < manifestPrefixLen || string(data[:4]) != string(manifestMagic) {
		return Info{}, nil, 0, 0, fmt.Errorf("not a manifest: %w", ErrCorrupt)
	}
	v := data[4]
	if err := checkVersion(uint64(v)); err != nil {
		return Info{}, nil, 0, 0, err
	}
	hl := int(binary.LittleEndian.Uint32(data[5:9]))
	if hl > maxHeaderSize {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header of %d bytes: %w", hl, ErrCorrupt)
	}
	end := manifestPrefixLen + hl
	if len(data) < end {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest truncated in its header: %w", ErrCorrupt)
	}
	plain, err := c.open(nil, data[manifestPrefixLen:end], manifestAD(v, 'h', key, nil))
	if err != nil {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header: %w", err)
	}
	d := dec{b: plain}
	in, bodyLen := decodeInfo(&d)
	if err := d.done("manifest header"); err != nil {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header: %w", err)
	}
	if in.Version != int(v) {
		return Info{}, nil, 0, 0, fmt.Errorf("manifest header of version %d in a version %d manifest: %w", in.Version, v, ErrCorrupt)
	}
	return in, plain, end, bodyLen, nil
}

// decodeManifest decodes and validates a stored manifest. A format 2
// manifest comes back without its chunks: Load fetches its list parts.
func decodeManifest(data []byte, key string, c *cryptor) (*Manifest, error) {
	in, head, end, bodyLen, err := decodeManifestHeader(data, key, c)
	if err != nil {
		return nil, err
	}
	hsum := blake3.Sum256(head)
	zbody, err := c.open(nil, data[end:], manifestAD(byte(in.Version), 'b', key, hsum[:]))
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
	if in.Version == 1 {
		decodeBodyV1(&d, m)
	} else {
		decodeBody(&d, m)
	}
	if err := d.done("manifest body"); err != nil {
		return nil, fmt.Errorf("manifest body: %w", err)
	}
	return m, nil
}
