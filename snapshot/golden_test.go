package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Golden files pin the on-store format: a change to any encoding shows up
// here and must be deliberate (new FormatVersion, doc.go updated). Old
// golden objects must always stay readable. Regenerate with
//
//	go test ./snapshot -run TestGolden -update
var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update && got != nil {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	return want
}

// goldenConfig is the config of the store the encrypted golden objects
// belong to; its key is testKey.
func goldenCryptor(t *testing.T) *cryptor {
	t.Helper()
	cfg := storeConfig{
		Format: formatName, Version: 1, StoreID: "00112233445566778899aabbccddeeff",
		Chunking: "fixed", BlockSize: 1 << 20, Compression: "zstd", Encryption: encryptionAES256GC,
	}
	_, _, check := deriveKeys(testKey, cfg.storeID())
	cfg.KeyCheck = hexString(check)
	data, _ := json.MarshalIndent(&cfg, "", "  ")
	want := golden(t, "config-v1.json", append(data, '\n'))
	if !bytes.Equal(append(data, '\n'), want) {
		t.Errorf("config encoding changed:\n%s\nwant\n%s", data, want)
	}
	parsed, err := parseConfig(want)
	if err != nil {
		t.Fatalf("golden config: %v", err)
	}
	c, err := newRepoCryptor(parsed, testKey)
	if err != nil {
		t.Fatalf("golden config with its key: %v", err)
	}
	if _, err := newRepoCryptor(parsed, bytes.Repeat([]byte{1}, 32)); err != ErrWrongKey {
		t.Errorf("golden config with another key: %v", err)
	}
	return c
}

func hexString(b []byte) string { return ID([32]byte(b)).String() }

func TestGoldenManifest(t *testing.T) {
	key := "snapshots/pg/20260801T120000Z-0123456789abcdef"
	m := validManifest()
	var head, body enc
	encodeBodyV1(&body, m)
	encodeInfo(&head, &m.Info, len(body.b))
	if want := golden(t, "manifest-v1.body", body.b); !bytes.Equal(body.b, want) {
		t.Error("manifest body encoding changed")
	}
	if want := golden(t, "manifest-v1.header", head.b); !bytes.Equal(head.b, want) {
		t.Error("manifest header encoding changed")
	}
	for _, tc := range []struct {
		file string
		c    *cryptor
	}{{"manifest-v1-plain.bin", &cryptor{}}, {"manifest-v1-encrypted.bin", goldenCryptor(t)}} {
		var fresh []byte
		if *update {
			var err error
			if fresh, err = encodeManifestV1(m, key, tc.c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := decodeManifest(golden(t, tc.file, fresh), key, tc.c)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if !reflect.DeepEqual(got, validManifest()) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", tc.file, got, validManifest())
		}
	}
}

func TestGoldenIndex(t *testing.T) {
	key := "index/pg/initial/" + ID{1, 2, 3}.String()
	chunks := validManifest().Chunks
	chunks[1].Codec = CodecS2
	ix := &packIndex{Pack: ID{1, 2, 3}, Size: 510, Chunks: chunks}
	enc := encodeIndex(ix, key, &cryptor{})
	want := golden(t, "index-v2-plain.bin", enc)
	if !bytes.Equal(enc, want) {
		t.Error("pack index encoding changed")
	}
	got, err := decodeIndex(want, key, &cryptor{}, 1<<20)
	if err != nil || !reflect.DeepEqual(got, ix) {
		t.Errorf("golden index decodes to %+v, %v", got, err)
	}
	// Format 1 indexes (of 1 MiB-grid chunks) are of no use to a format 2
	// run: they are refused, and Create then ignores them.
	if _, err := decodeIndex(golden(t, "index-v1-plain.bin", nil), key, &cryptor{}, 1<<20); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("format 1 index: %v", err)
	}
}

// goldenChunks are the plaintexts in the golden packs: one that
// compresses and one stored raw.
func goldenChunks() [][]byte {
	return [][]byte{dbLike(5000, 1), bytes.Repeat([]byte{0x5a, 0xa5, 0x3c, 0x01, 0xfe, 0x77, 0x12}, 150)}
}

func TestGoldenPack(t *testing.T) {
	for _, tc := range []struct {
		file string
		c    *cryptor
	}{{"pack-v1-plain", &cryptor{}}, {"pack-v1-encrypted", goldenCryptor(t)}} {
		t.Run(tc.file, func(t *testing.T) {
			h := tc.c.newHasher()
			var chunks []Chunk
			var pack []byte
			if *update {
				zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
				for i, data := range goldenChunks() {
					c := Chunk{ID: sumID(h, data), Offset: uint32(len(pack)), RawLength: uint32(len(data))}
					stored := data
					if i == 0 {
						stored, c.Codec = zw.EncodeAll(data, nil), CodecZstd
					}
					pack = tc.c.sealChunk(pack, stored, c.ID[:])
					c.Length = uint32(len(pack)) - c.Offset
					chunks = append(chunks, c)
				}
				js, _ := json.MarshalIndent(chunks, "", " ")
				golden(t, tc.file+".chunks.json", js)
			}
			pack = golden(t, tc.file+".bin", pack)
			// The JSON holds format 1's Chunk, with a Compressed flag.
			var legacy []struct {
				ID                        [32]byte
				Offset, Length, RawLength uint32
				Compressed                bool
			}
			if err := json.Unmarshal(golden(t, tc.file+".chunks.json", nil), &legacy); err != nil {
				t.Fatal(err)
			}
			chunks = chunks[:0]
			for _, l := range legacy {
				c := Chunk{ID: ID(l.ID), Offset: l.Offset, Length: l.Length, RawLength: l.RawLength}
				if l.Compressed {
					c.Codec = CodecZstd
				}
				chunks = append(chunks, c)
			}
			r := &Repo{crypt: tc.c, blockSize: 1 << 20}
			cd, err := r.newChunkDecoder(1 << 20)
			if err != nil {
				t.Fatal(err)
			}
			defer cd.close()
			for i, want := range goldenChunks() {
				c := &chunks[i]
				got, err := cd.decode(c, pack[c.Offset:c.Offset+c.Length])
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("chunk %d: %v", i, err)
				}
				if c.ID != sumID(h, want) {
					t.Errorf("chunk %d: ID scheme changed", i)
				}
			}
			if chunks[0].Codec != CodecZstd || chunks[1].Codec != CodecNone {
				t.Error("golden pack should hold one compressed and one raw chunk")
			}
		})
	}
}

func TestGoldenStatCache(t *testing.T) {
	c := &statCache{Snapshot: "20260801T120000Z-0123456789abcdef", Source: sourceRestore, Taken: 1785585600e9,
		Entries: map[string]statEntry{"a": {1, 2, 3, 4}, "b/c": {5, 6, 7, 8}}}
	enc := encodeStatCache(c)
	if want := golden(t, "statcache-v1.bin", enc); !bytes.Equal(enc, want) {
		t.Error("stat cache encoding changed")
	}
	got, err := decodeStatCache(enc)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("decodes to %+v, %v", got, err)
	}
}
