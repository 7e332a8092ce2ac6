package snapshot

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Fuzz targets for everything that decodes bytes from the store or the
// local disk. Sealed objects carry a checksum or an AEAD tag that random
// mutations cannot fix, so the decoders behind the seal get their own
// targets. Seeds: the golden files. Run each with, for example,
//
//	go test ./snapshot -run '^$' -fuzz '^FuzzManifestBody$' -fuzztime 1m

func seed(f *testing.F, names ...string) {
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzDecodeManifest: whole stored manifests, plain and encrypted.
func FuzzDecodeManifest(f *testing.F) {
	seed(f, "manifest-v1-plain.bin", "manifest-v1-encrypted.bin")
	key := "snapshots/pg/20260801T120000Z-0123456789abcdef"
	plain := &cryptor{}
	enc, err := newCryptor(testKey, []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []*cryptor{plain, enc} {
			if m, err := decodeManifest(data, key, c); err == nil {
				roundTrip(t, m)
			}
		}
	})
}

// roundTrip: whatever decodes re-encodes to something that decodes to
// the same manifest, and its paths can be computed.
func roundTrip(t *testing.T, m *Manifest) {
	_ = m.Paths()
	data, err := encodeManifest(m, "k", &cryptor{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := decodeManifest(data, "k", &cryptor{})
	if err != nil {
		t.Fatalf("accepted manifest does not survive re-encoding: %v", err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatal("manifest changed through re-encoding")
	}
}

// FuzzManifestBody: the body decoder (tree, chunk table) behind the seal.
func FuzzManifestBody(f *testing.F) {
	seed(f, "manifest-v1.body")
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &Manifest{Info: validManifest().Info}
		d := dec{b: data}
		decodeBody(&d, m, limitsFor(len(data)))
		if d.done("body") == nil {
			roundTrip(t, m)
		}
	})
}

// FuzzManifestHeader: the header decoder behind the seal.
func FuzzManifestHeader(f *testing.F) {
	seed(f, "manifest-v1.header")
	f.Fuzz(func(t *testing.T, data []byte) {
		d := dec{b: data}
		in, n := decodeInfo(&d)
		if d.done("header") == nil {
			var e enc
			encodeInfo(&e, &in, n)
			d2 := dec{b: e.b}
			in2, _ := decodeInfo(&d2)
			if d2.done("header") != nil || !reflect.DeepEqual(in, in2) {
				t.Fatal("header changed through re-encoding")
			}
		}
	})
}

// FuzzDecodeIndex: pack indexes, whole and behind the seal.
func FuzzDecodeIndex(f *testing.F) {
	seed(f, "index-v1-plain.bin")
	key := "index/pg/initial/" + ID{1, 2, 3}.String()
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeIndex(data, key, &cryptor{}, defaultBlockSize)
		if len(data) > 5 {
			if ix, err := decodeIndexBody(data[5:], defaultBlockSize); err == nil {
				for _, c := range ix.Chunks {
					if uint64(c.Offset)+uint64(c.Length) > ix.Size {
						t.Fatal("accepted a chunk outside its pack")
					}
				}
			}
		}
	})
}

// FuzzDecodeStatCache: the local stat cache file.
func FuzzDecodeStatCache(f *testing.F) {
	seed(f, "statcache-v1.bin")
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeStatCache(data)
		if c, err := decodeStatCacheBody(data); err == nil {
			if _, err := decodeStatCache(encodeStatCache(c)); err != nil {
				t.Fatalf("accepted stat cache does not survive re-encoding: %v", err)
			}
		}
	})
}

// FuzzParseConfig: the store configuration object.
func FuzzParseConfig(f *testing.F) {
	seed(f, "config-v1.json")
	f.Add([]byte(`{"format":"portvol-snapshot-store","version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := parseConfig(data); err == nil {
			if _, err := newRepoCryptor(c, testKey); err != nil && c.Encryption == encryptionAES256GC && err != ErrWrongKey {
				t.Fatalf("accepted config unusable: %v", err)
			}
		}
	})
}
