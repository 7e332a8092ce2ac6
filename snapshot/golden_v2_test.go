package snapshot

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"time"
)

// validManifestV2 is a small well-formed format 2 manifest, with its list
// parts (plain IDs) stored in pack {9, 9, 9}; it returns the parts'
// plaintexts too.
func validManifestV2() (*Manifest, [][]byte) {
	bs := 16 << 10
	m := &Manifest{
		Info: Info{
			Version: 2,
			ID:      "20260801T120000Z-0123456789abcdef", Volume: "pg", Host: "host-a", Generation: 7,
			Started: time.Unix(1785585600, 0), Finished: time.Unix(1785585601, 500), BlockSize: bs,
			Stats: Stats{Files: 3, Dirs: 2, Symlinks: 1, Hardlinks: 1, Bytes: uint64(bs)*71 + 10, DataBytes: uint64(bs)*3 + 10},
		},
		Packs: []ID{{1, 2, 3}},
		Chunks: []Chunk{
			{ID: ID{0xaa}, Pack: 0, Offset: 0, Length: 500, RawLength: uint32(bs), Codec: CodecS2},
			{ID: ID{0xbb}, Pack: 0, Offset: 500, Length: 10, RawLength: 10},
			{ID: ID{0xcc}, Pack: 0, Offset: 510, Length: 900, RawLength: uint32(bs), Codec: CodecZstd},
		},
		Nodes: []Node{
			{Parent: -1, Type: TypeDir, Mode: 0o700, UID: 70, GID: 70, Mtime: 1e18},
			{Parent: 0, Name: "base", Type: TypeDir, Mode: 0o755, Mtime: 1e18 + 1},
			{Parent: 1, Name: "table", Type: TypeFile, Mode: 0o600, UID: 70, GID: 70, Mtime: 1e18 + 2, Ctime: 5, Inode: 42,
				Size: uint64(bs) + 10, Blocks: []BlockRef{{0, 0}, {1, 1}}, Xattrs: []Xattr{{"user.a", []byte("b")}}},
			{Parent: 0, Name: "big", Type: TypeFile, Mode: 0o644, Size: 70 * uint64(bs), Blocks: []BlockRef{{0, 0}, {66, 2}}},
			{Parent: 0, Name: "sparse", Type: TypeFile, Mode: 0o644, Size: 100 << 20},
			{Parent: 0, Name: "ln", Type: TypeSymlink, Target: "base/table", Mode: 0o777},
			{Parent: 1, Name: "again", Type: TypeHardlink, Link: 2},
			{Parent: 0, Name: "pipe", Type: TypeFIFO, Mode: 0o600},
		},
	}
	partPack := ID{9, 9, 9}
	m.Packs = append(m.Packs, partPack)
	h := (&cryptor{}).newHasher()
	var plains [][]byte
	off := uint32(0)
	for i := range m.Nodes {
		n := &m.Nodes[i]
		for lo := 0; lo < len(n.Blocks); {
			span := n.Blocks[lo].Index / partFanout
			hi := lo + 1
			for hi < len(n.Blocks) && n.Blocks[hi].Index/partFanout == span {
				hi++
			}
			var e enc
			encodePart(&e, m, n.Blocks[lo:hi], span)
			lo = hi
			plains = append(plains, e.b)
			m.parts = append(m.parts, partRef{Node: int32(i), Span: span, ID: sumID(h, e.b), Pack: 1, Offset: off, Length: uint32(len(e.b))})
			off += uint32(len(e.b))
		}
	}
	return m, plains
}

func TestGoldenManifestV2(t *testing.T) {
	key := "snapshots/pg/20260801T120000Z-0123456789abcdef"
	m, plains := validManifestV2()
	var head, body enc
	encodeBody(&body, m)
	encodeInfo(&head, &m.Info, len(body.b))
	if want := golden(t, "manifest-v2.body", body.b); !bytes.Equal(body.b, want) {
		t.Error("manifest body encoding changed")
	}
	if want := golden(t, "manifest-v2.header", head.b); !bytes.Equal(head.b, want) {
		t.Error("manifest header encoding changed")
	}
	if want := golden(t, "part-v2.bin", plains[2]); !bytes.Equal(plains[2], want) {
		t.Error("list part encoding changed")
	}
	// What a decoded format 2 manifest holds before Load fetches parts.
	want := &Manifest{Info: m.Info, Packs: []ID{{9, 9, 9}}, parts: slices.Clone(m.parts)}
	for i := range m.parts {
		want.parts[i].Pack = 0
	}
	for _, n := range m.Nodes {
		n.Blocks = nil
		want.Nodes = append(want.Nodes, n)
	}
	for _, tc := range []struct {
		file string
		c    *cryptor
	}{{"manifest-v2-plain.bin", &cryptor{}}, {"manifest-v2-encrypted.bin", goldenCryptor(t)}} {
		var fresh []byte
		if *update {
			var err error
			if fresh, err = encodeManifest(m, key, tc.c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := decodeManifest(golden(t, tc.file, fresh), key, tc.c)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", tc.file, got, want)
		}
	}
	// The part of "big" covering blocks 64..69 holds block 66.
	packs, entries, err := decodePart(golden(t, "part-v2.bin", nil), m.BlockSize, m.Nodes[3].Size, 1)
	if err != nil || len(packs) != 1 || packs[0] != (ID{1, 2, 3}) || len(entries) != 1 ||
		entries[0].index != 66 || entries[0].chunk.ID != (ID{0xcc}) || entries[0].chunk.Codec != CodecZstd ||
		entries[0].chunk.Offset != 510 || entries[0].chunk.Length != 900 || entries[0].chunk.RawLength != 16<<10 {
		t.Errorf("golden part decodes to %v %+v, %v", packs, entries, err)
	}
}

// Hostile list parts are refused.
func TestHostileParts(t *testing.T) {
	m, _ := validManifestV2()
	bs, size := m.BlockSize, m.Nodes[3].Size
	encodeOne := func(mut func(e *enc)) []byte {
		var e enc
		e.uvarint(1)
		e.fixed(make([]byte, 32))
		e.uvarint(1)
		mut(&e)
		return e.b
	}
	good := func(e *enc) { e.uvarint(2); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 10); e.u8(0) }
	if _, _, err := decodePart(encodeOne(good), bs, size, 1); err != nil {
		t.Fatalf("good part refused: %v", err)
	}
	for name, b := range map[string][]byte{
		"block past the span": encodeOne(func(e *enc) { e.uvarint(64); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 10); e.u8(0) }),
		"block past the file": encodeOne(func(e *enc) { e.uvarint(6); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 10); e.u8(0) }),
		"unknown codec":       encodeOne(func(e *enc) { e.uvarint(0); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 10); e.u8(9) }),
		"pack outside table":  encodeOne(func(e *enc) { e.uvarint(0); e.fixed(make([]byte, 32)); e.uvarints(1, 0, 10); e.u8(0) }),
		"empty record":        encodeOne(func(e *enc) { e.uvarint(0); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 0); e.u8(0) }),
		"record over a block": encodeOne(func(e *enc) { e.uvarint(0); e.fixed(make([]byte, 32)); e.uvarints(0, 0, 1<<20); e.u8(0) }),
		"trailing bytes":      append(encodeOne(good), 0),
		"no entries":          {1},
	} {
		if _, _, err := decodePart(b, bs, size, 1); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
