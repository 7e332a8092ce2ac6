package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer"
)

// A Create that dies half-way leaves no snapshot; the next run with the
// same parent reuses the packs already uploaded and yields a correct
// snapshot.
func TestInterruptedCreateThenRerun(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	r.packSize = 1 << 20 // many packs from a small tree
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	writeFile(t, filepath.Join(src, "data1"), randBytes(6<<20), 0o600)
	writeFile(t, filepath.Join(src, "data2"), dbLike(6<<20, 4), 0o600)

	fs.failPutsAfter.Store(8) // 4 packs and their indexes, then the store "goes away"
	if _, err := r.Create(ctx, "v", src, CreateOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted Create returned %v", err)
	}
	if infos, err := r.List(ctx, "v"); err != nil || len(infos) != 0 {
		t.Fatalf("after an interrupted Create, List = %v, %v; want no snapshot", infos, err)
	}
	if keys := storeKeys(t, fs, "snapshots/v/"); len(keys) != 0 {
		t.Fatalf("manifest objects after interruption: %v", keys)
	}
	var leftRaw uint64 // plaintext bytes in the packs the first run completed
	err := r.loadIndexes(ctx, indexPrefix("v", ""), nil, func(ix *packIndex) {
		for _, c := range ix.Chunks {
			leftRaw += uint64(c.RawLength)
		}
	})
	if err != nil || leftRaw == 0 {
		t.Fatalf("the interrupted run left no usable pack (%v); the test proves nothing", err)
	}

	fs.failPutsAfter.Store(0)
	fs.resetCounts()
	m, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The rerun uploads only what the first run did not.
	if m.Stats.NewBytes > m.Stats.DataBytes-leftRaw {
		t.Errorf("rerun uploaded %d new bytes of %d; %d were already uploaded", m.Stats.NewBytes, m.Stats.DataBytes, leftRaw)
	}
	want := scanTree(t, src)
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, want, scanTree(t, dst))
	if err := r.Verify(ctx, "v", m.ID); err != nil {
		t.Fatal(err)
	}
}

// A pack left by an interrupted Create that vanished before the re-run
// (a manual clean-up) is not trusted through its leftover index: the
// re-run uploads its chunks again and publishes a snapshot whose every
// pack is there.
func TestRerunAfterLeftoverPackVanished(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, nil)
	r.packSize = 1 << 20
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "data1"), randBytes(6<<20), 0o600)
	writeFile(t, filepath.Join(src, "data2"), randBytes(6<<20), 0o600)
	fs.failPutsAfter.Store(8) // 4 packs and their indexes
	if _, err := r.Create(ctx, "v", src, CreateOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted Create returned %v", err)
	}
	var left []ID
	if err := r.loadIndexes(ctx, indexPrefix("v", ""), nil, func(ix *packIndex) { left = append(left, ix.Pack) }); err != nil || len(left) < 2 {
		t.Fatalf("the interrupted run left %d usable packs (%v); the test needs two", len(left), err)
	}
	if err := fs.Delete(ctx, packKey(left[0])); err != nil {
		t.Fatal(err)
	}
	// A pack of another size under the same name is no better.
	if err := fs.ObjectStore.Put(ctx, packKey(left[1]), bytes.NewReader([]byte("short")), 5); err != nil {
		t.Fatal(err)
	}
	var trusted []ID
	if err := r.loadIndexes(ctx, indexPrefix("v", ""), nil, func(ix *packIndex) { trusted = append(trusted, ix.Pack) }); err != nil {
		t.Fatal(err)
	}
	if len(trusted) != len(left)-2 {
		t.Errorf("%d leftover indexes trusted after one pack vanished and one shrank; want %d", len(trusted), len(left)-2)
	}
	fs.failPutsAfter.Store(0)
	m, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Packs {
		oi, err := fs.Stat(ctx, packKey(p))
		if err != nil || oi.Size < 1<<20 {
			t.Errorf("the snapshot refers to pack %s, which the store lacks or holds cut short (%+v, %v)", p, oi, err)
		}
	}
	if err := r.Verify(ctx, "v", m.ID); err != nil {
		t.Fatalf("verify of the re-run's snapshot: %v", err)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, scanTree(t, src), scanTree(t, dst))
}

// damage applies f to the first pack object the snapshot uses.
func damagePack(t *testing.T, fs *faultStore, m *Manifest, f func(data []byte) []byte) string {
	t.Helper()
	ctx := context.Background()
	key := packKey(m.Packs[0])
	rc, err := fs.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	data := f(buf.Bytes())
	if data == nil {
		if err := fs.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		return key
	}
	if err := fs.ObjectStore.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return key
}

// Tampered, truncated and missing packs make Restore and Verify fail
// with an error naming the object, and Restore leaves the target as it
// was.
func TestDamagedPack(t *testing.T) {
	cases := []struct {
		name string
		f    func([]byte) []byte
		want string
	}{
		{"tampered", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }, ""},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, "truncated"},
		{"missing", func([]byte) []byte { return nil }, "missing"},
	}
	for _, key := range [][]byte{nil, testKey} {
		for _, tc := range cases {
			name := tc.name
			if key != nil {
				name += "-encrypted"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				r, fs := newTestRepo(t, key)
				base := t.TempDir()
				src := filepath.Join(base, "src")
				writeFile(t, filepath.Join(src, "a"), dbLike(3<<20, 5), 0o600)
				m, err := r.Create(ctx, "v", src, CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				objKey := damagePack(t, fs, m, tc.f)

				dst := filepath.Join(base, "dst")
				writeFile(t, filepath.Join(dst, "keep-me"), []byte("previous contents"), 0o600)
				before := scanTree(t, dst)
				err = r.Restore(ctx, "v", m.ID, dst, RestoreOptions{})
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), objKey) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Restore: %v; want ErrCorrupt naming %s", err, objKey)
				}
				compareTrees(t, before, scanTree(t, dst))
				if entries, _ := os.ReadDir(base); len(entries) != 2 {
					t.Errorf("leftovers beside the target: %v", entries)
				}

				err = r.Verify(ctx, "v", m.ID)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), objKey) {
					t.Fatalf("Verify: %v; want ErrCorrupt naming %s", err, objKey)
				}
			})
		}
	}
}

// Flipping a byte the snapshot does not decode (inside a pack, between
// what Restore reads) is still caught by Verify via the pack's name.
func TestVerifyCatchesAnyPackByte(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, nil)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), dbLike(1<<20, 6), 0o600)
	m, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, "v", m.ID); err != nil {
		t.Fatalf("Verify of an intact snapshot: %v", err)
	}
	key := damagePack(t, fs, m, func(b []byte) []byte { return append(b, 0) })
	if err := r.Verify(ctx, "v", m.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Verify: %v", err)
	}
}

func TestDamagedManifest(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		ctx := context.Background()
		r, fs := newTestRepo(t, key)
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "a"), []byte("x"), 0o600)
		m, err := r.Create(ctx, "v", src, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mk := manifestKey("v", m.ID)
		data, _, _ := fs.Load(ctx, mk, maxManifestSize)
		for _, off := range []int{2, 12, len(data) / 2, len(data) - 1} {
			bad := bytes.Clone(data)
			bad[off] ^= 0x80
			fs.ObjectStore.Put(ctx, mk, bytes.NewReader(bad), int64(len(bad)))
			if _, err := r.Load(ctx, "v", m.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), mk) {
				t.Errorf("byte %d flipped: Load = %v", off, err)
			}
		}
		// A manifest copied to another snapshot's name is refused.
		other := manifestKey("v", "20250101T000000Z-0000000000000000")
		fs.ObjectStore.Put(ctx, other, bytes.NewReader(data), int64(len(data)))
		if _, err := r.Load(ctx, "v", "20250101T000000Z-0000000000000000"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("renamed manifest: Load = %v", err)
		}
		if _, err := r.Load(ctx, "v", "20250101T000000Z-0000000000000001"); !errors.Is(err, ErrNotFound) {
			t.Errorf("absent manifest: Load = %v", err)
		}
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	_, encStore := newTestRepo(t, testKey)
	_, plainStore := newTestRepo(t, nil)
	other := bytes.Repeat([]byte{7}, 32)

	if _, err := Open(ctx, encStore, Options{}); !errors.Is(err, ErrKeyRequired) || !strings.Contains(err.Error(), "--encryption-key-file") {
		t.Errorf("encrypted store, no key: %v", err)
	}
	if _, err := Open(ctx, encStore, Options{Key: other}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("encrypted store, wrong key: %v", err)
	}
	if _, err := Open(ctx, plainStore, Options{Key: testKey}); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("plain store, key: %v", err)
	}
	if _, err := Open(ctx, encStore, Options{Key: []byte("short")}); !errors.Is(err, ErrBadKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := Open(ctx, &faultStore{ObjectStore: newMem()}, Options{}); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("empty store: %v", err)
	}
	// Init is idempotent with the same settings, refuses others.
	if err := Init(ctx, encStore, InitOptions{Key: testKey}); err != nil {
		t.Errorf("re-Init with the same key: %v", err)
	}
	if err := Init(ctx, encStore, InitOptions{Key: other}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("re-Init with another key: %v", err)
	}
	if err := Init(ctx, encStore, InitOptions{}); !errors.Is(err, ErrKeyRequired) {
		t.Errorf("re-Init without key: %v", err)
	}
	if err := Init(ctx, plainStore, InitOptions{BlockSize: 4 << 20}); !errors.Is(err, ErrConfigMismatch) {
		t.Errorf("re-Init with another block size: %v", err)
	}
}

// With encryption on, the store holds no plaintext and no plain hash of
// any chunk (IDs are keyed), and manifests do not reveal file names.
func TestEncryptedStoreRevealsNothing(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	src := t.TempDir()
	secret := bytes.Repeat([]byte("TOP-SECRET-ROW "), 70000)
	writeFile(t, filepath.Join(src, "secret-file-name"), secret, 0o600)
	if _, err := r.Create(ctx, "v", src, CreateOptions{Host: "hostname-xyz"}); err != nil {
		t.Fatal(err)
	}
	plainIDs := [][]byte{}
	for off := 0; off < len(secret); off += defaultBlockSize {
		s := sumPlain(secret[off:min(off+defaultBlockSize, len(secret))])
		plainIDs = append(plainIDs, s[:], []byte(ID(s).String()))
	}
	var all []byte
	fs.List(ctx, "", func(oi transfer.ObjectInfo) error {
		data, _, err := fs.Load(ctx, oi.Key, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, oi.Key...), data...)
		return nil
	})
	for _, needle := range append(plainIDs, []byte("TOP-SECRET"), []byte("secret-file-name"), []byte("hostname-xyz")) {
		if bytes.Contains(all, needle) {
			t.Errorf("store reveals %q", needle[:min(len(needle), 16)])
		}
	}
}
