package snapshot

import (
	"strconv"
	"strings"
	"time"
)

// NodeType is the kind of a tree entry.
type NodeType uint8

// Node types. Sockets are not recorded.
const (
	TypeDir      NodeType = 1
	TypeFile     NodeType = 2
	TypeSymlink  NodeType = 3
	TypeHardlink NodeType = 4 // another name for an earlier TypeFile node
	TypeFIFO     NodeType = 5
	TypeCharDev  NodeType = 6
	TypeBlockDev NodeType = 7
)

func (t NodeType) String() string {
	switch t {
	case TypeDir:
		return "dir"
	case TypeFile:
		return "file"
	case TypeSymlink:
		return "symlink"
	case TypeHardlink:
		return "hardlink"
	case TypeFIFO:
		return "fifo"
	case TypeCharDev:
		return "chardev"
	case TypeBlockDev:
		return "blockdev"
	}
	return "type" + strconv.Itoa(int(t))
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// BlockRef says that block Index of a file (bytes Index*BlockSize up to
// the next block or the end of the file) holds chunk Chunk. Blocks of a
// file without a BlockRef are holes (all zero).
type BlockRef struct {
	Index uint64
	Chunk uint32 // index into Manifest.Chunks
}

// Node is one entry of the tree. Nodes[0] is the volume's root directory;
// every other node names its parent, an earlier directory node.
type Node struct {
	Parent int32 // index of the parent directory; -1 for the root
	Name   string
	Type   NodeType

	// Metadata; unused for TypeHardlink, which shares its target's.
	Mode  uint32 // permission, setuid, setgid and sticky bits (07777)
	UID   uint32
	GID   uint32
	Mtime int64  // nanoseconds since the Unix epoch
	Ctime int64  // the writer's ctime (ns); for change detection only
	Inode uint64 // the writer's inode number; for change detection only

	Size   uint64     // TypeFile: length in bytes
	Blocks []BlockRef // TypeFile: non-hole blocks in increasing Index order
	Target string     // TypeSymlink: link target, as stored
	Link   int32      // TypeHardlink: index of the TypeFile node it names
	Rdev   uint64     // TypeCharDev, TypeBlockDev: device number
	Xattrs []Xattr
}

// Chunk locates one chunk: the record of Length bytes at Offset in pack
// Packs[Pack] holds RawLength bytes of plaintext, compressed with Codec.
type Chunk struct {
	ID        ID
	Pack      uint32
	Offset    uint32
	Length    uint32
	RawLength uint32
	Codec     Codec
}

// Stats summarises a snapshot and the run that made it.
type Stats struct {
	Files     uint64 // regular files (hardlinks excluded)
	Dirs      uint64
	Symlinks  uint64
	Hardlinks uint64
	Others    uint64 // FIFOs and devices
	Skipped   uint64 // sockets, which are not recorded
	Bytes     uint64 // sum of regular file sizes
	DataBytes uint64 // bytes in non-hole blocks

	FilesRead     uint64 // files read by this run (the rest reused the parent's chunks)
	BytesRead     uint64
	NewChunks     uint64 // chunks this run uploaded
	NewBytes      uint64 // their plaintext size
	UploadedBytes uint64 // pack bytes uploaded
}

// Info is the header of a snapshot: what List returns.
type Info struct {
	ID         string
	Volume     string
	Parent     string // "" for a first snapshot
	Host       string // the writer's host ID
	Generation uint64 // the lease generation of the writer (fencing token)
	Started    time.Time
	Finished   time.Time
	BlockSize  int
	Version    int // format version of the manifest (1 or 2)
	Stats      Stats
}

// Manifest is a whole snapshot: its header, the chunks it uses and the
// tree. It is immutable once written. In format 2 the per-file chunk
// lists are stored as list parts (doc.go); Load reassembles them, so
// Chunks and Blocks look the same whatever the version. A manifest that
// Create returns after using a ChangeSource holds in Packs, Chunks and
// Blocks only what it loaded or wrote (the spans that changed); Load it
// for the whole of them.
type Manifest struct {
	Info
	Packs  []ID // every pack the snapshot uses: chunks' and list parts'
	Chunks []Chunk
	Nodes  []Node

	// Unchanged is set by Create when the snapshot has the same tree,
	// metadata and content as its parent (CreateOptions.SkipUnchanged).
	Unchanged bool
	// CacheErr is set by Create when the stat cache could not be written
	// (a full disk, say). The snapshot is complete without it: the cache
	// only spares reading unchanged files, and the next Create reads them.
	CacheErr error

	parts []partRef // format 2: the list parts, in node and span order
}

// partRef says that span Span of file node Node (blocks Span*F up to
// (Span+1)*F, F = the part fanout) is listed by the list part with ID,
// stored at Offset (Length bytes) in pack Packs[Pack]. Spans without
// data blocks have no part.
type partRef struct {
	Node   int32
	Span   uint64
	ID     ID
	Pack   uint32
	Offset uint32
	Length uint32
}

// Paths returns the slash-separated path of every node relative to the
// root ("." for the root itself).
func (m *Manifest) Paths() []string {
	paths := make([]string, len(m.Nodes))
	for i := range m.Nodes {
		n := &m.Nodes[i]
		switch {
		case i == 0:
			paths[i] = "."
		case n.Parent == 0:
			paths[i] = n.Name
		default:
			paths[i] = paths[n.Parent] + "/" + n.Name
		}
	}
	return paths
}

// blockLen is the length of block idx of a file of the given size.
func blockLen(size, idx uint64, bs int) uint64 {
	start := idx * uint64(bs)
	if start >= size {
		return 0
	}
	return min(uint64(bs), size-start)
}

func numBlocks(size uint64, bs int) uint64 { return (size + uint64(bs) - 1) / uint64(bs) }

// validName reports whether s can be one path component.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !strings.ContainsAny(s, "/\x00")
}
