package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validManifest is a small well-formed manifest to mutate.
func validManifest() *Manifest {
	bs := defaultBlockSize
	return &Manifest{
		Info: Info{
			ID: "20260801T120000Z-0123456789abcdef", Volume: "pg", Host: "host-a", Generation: 7,
			Started: time.Unix(1785585600, 0), Finished: time.Unix(1785585601, 500), BlockSize: bs,
			Stats: Stats{Files: 2, Dirs: 2, Symlinks: 1, Hardlinks: 1, Bytes: uint64(bs) + 10, DataBytes: uint64(bs) + 10},
		},
		Packs: []ID{{1, 2, 3}},
		Chunks: []Chunk{
			{ID: ID{0xaa}, Pack: 0, Offset: 0, Length: 500, RawLength: uint32(bs), Compressed: true},
			{ID: ID{0xbb}, Pack: 0, Offset: 500, Length: 10, RawLength: 10},
		},
		Nodes: []Node{
			{Parent: -1, Type: TypeDir, Mode: 0o700, UID: 70, GID: 70, Mtime: 1e18},
			{Parent: 0, Name: "base", Type: TypeDir, Mode: 0o755, Mtime: 1e18 + 1},
			{Parent: 1, Name: "table", Type: TypeFile, Mode: 0o600, UID: 70, GID: 70, Mtime: 1e18 + 2, Ctime: 5, Inode: 42,
				Size: uint64(bs) + 10, Blocks: []BlockRef{{0, 0}, {1, 1}}, Xattrs: []Xattr{{"user.a", []byte("b")}}},
			{Parent: 0, Name: "sparse", Type: TypeFile, Mode: 0o644, Size: 100 << 20},
			{Parent: 0, Name: "ln", Type: TypeSymlink, Target: "base/table", Mode: 0o777},
			{Parent: 1, Name: "again", Type: TypeHardlink, Link: 2},
			{Parent: 0, Name: "pipe", Type: TypeFIFO, Mode: 0o600},
		},
	}
}

// Manifests that would make Restore write outside the target, through a
// symlink, or allocate without bound are rejected when decoded.
func TestHostileManifests(t *testing.T) {
	key := "snapshots/pg/20260801T120000Z-0123456789abcdef"
	cases := map[string]func(m *Manifest){
		"dotdot name":            func(m *Manifest) { m.Nodes[1].Name = ".." },
		"dot name":               func(m *Manifest) { m.Nodes[1].Name = "." },
		"slash in name":          func(m *Manifest) { m.Nodes[3].Name = "../../etc/passwd" },
		"absolute name":          func(m *Manifest) { m.Nodes[3].Name = "/etc/passwd" },
		"empty name":             func(m *Manifest) { m.Nodes[3].Name = "" },
		"NUL in name":            func(m *Manifest) { m.Nodes[3].Name = "a\x00b" },
		"duplicate name":         func(m *Manifest) { m.Nodes[3].Name = "ln" },
		"parent is a file":       func(m *Manifest) { m.Nodes[6].Parent = 3 },
		"path through symlink":   func(m *Manifest) { m.Nodes[6].Parent = 4 },
		"parent after child":     func(m *Manifest) { m.Nodes[1].Parent = 5 },
		"parent is itself":       func(m *Manifest) { m.Nodes[1].Parent = 1 },
		"root not a directory":   func(m *Manifest) { m.Nodes[0].Type = TypeFile },
		"hardlink to directory":  func(m *Manifest) { m.Nodes[5].Link = 1 },
		"hardlink forward":       func(m *Manifest) { m.Nodes[5].Link = 6 },
		"hardlink to symlink":    func(m *Manifest) { m.Nodes[5].Link = 4 },
		"block past end of file": func(m *Manifest) { m.Nodes[2].Blocks[1].Index = 2 },
		"block order": func(m *Manifest) {
			m.Nodes[2].Blocks[0], m.Nodes[2].Blocks[1] = m.Nodes[2].Blocks[1], m.Nodes[2].Blocks[0]
		},
		"chunk out of range":    func(m *Manifest) { m.Nodes[2].Blocks[1].Chunk = 9 },
		"chunk of wrong length": func(m *Manifest) { m.Chunks[1].RawLength = 11 },
		"chunk longer than block": func(m *Manifest) {
			m.Chunks[0].RawLength = uint32(m.BlockSize) + 1
		},
		"pack out of range":    func(m *Manifest) { m.Chunks[1].Pack = 1 },
		"duplicate chunk id":   func(m *Manifest) { m.Chunks[1].ID = m.Chunks[0].ID },
		"chunk beyond packs":   func(m *Manifest) { m.Chunks[1].Offset = maxPackObject },
		"huge file":            func(m *Manifest) { m.Nodes[3].Size = 1 << 62 },
		"mode bits":            func(m *Manifest) { m.Nodes[3].Mode = 0o170777 },
		"empty symlink":        func(m *Manifest) { m.Nodes[4].Target = "" },
		"unknown type":         func(m *Manifest) { m.Nodes[6].Type = 99 },
		"empty xattr name":     func(m *Manifest) { m.Nodes[2].Xattrs[0].Name = "" },
		"bad id":               func(m *Manifest) { m.ID = "../../x" },
		"bad volume":           func(m *Manifest) { m.Volume = "../x" },
		"tiny block size":      func(m *Manifest) { m.BlockSize = 4096 },
		"no root":              func(m *Manifest) { m.Nodes = nil },
		"root not first":       func(m *Manifest) { m.Nodes[0].Type = TypeSymlink; m.Nodes[0].Target = "/" },
		"huge block gap index": func(m *Manifest) { m.Nodes[3].Blocks = []BlockRef{{Index: 1 << 40, Chunk: 1}} },
	}
	c := &cryptor{}
	// The unmodified manifest decodes: the cases fail for their reason.
	data, err := encodeManifest(validManifest(), key, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeManifest(data, key, c); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := validManifest()
			mutate(m)
			data, err := encodeManifest(m, key, c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeManifest(data, key, c); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decoded without ErrCorrupt: %v", err)
			}
		})
	}
}

// Counts that lie about the size of what follows do not allocate.
func TestManifestCountsCannotAllocate(t *testing.T) {
	m := validManifest()
	var e enc
	e.uvarint(0)         // packs
	e.uvarint(maxChunks) // chunk count, with no chunks following
	d := dec{b: e.b}
	decodeBody(&d, m, limitsFor(1<<30))
	if !errors.Is(d.err, ErrCorrupt) || len(m.Chunks) > 0 {
		t.Errorf("lying chunk count: %v, %d chunks", d.err, len(m.Chunks))
	}
}

// Restore of a hostile manifest fails before writing anything, and
// nothing appears outside the target.
func TestRestoreRejectsHostileManifest(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, nil)
	base := t.TempDir()
	m := validManifest()
	m.Volume = "v"
	m.Nodes[3].Name = "../escaped"
	m.Nodes[3].Size = 10
	key := manifestKey("v", m.ID)
	data, _ := encodeManifest(m, key, r.crypt)
	if _, err := fs.PutIfAbsent(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "state", "data")
	err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Restore: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "state", "escaped")); err == nil {
		t.Error("hostile manifest wrote outside the target")
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Error("target created despite the error")
	}
}

// A forged manifest in an unencrypted store cannot plant privileges: a
// device node, a setuid or setgid file or file capabilities make Restore
// fail, naming them and the way to allow it, before anything is written.
// The host may allow them (RestorePrivileged), and an encrypted store's
// authenticated snapshots restore in full.
func TestPlainStoreDoesNotPlantPrivileges(t *testing.T) {
	ctx := context.Background()
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	forge := func(m *Manifest) {
		m.Volume = "v"
		m.Packs, m.Chunks = nil, nil
		m.Nodes = []Node{
			{Parent: -1, Type: TypeDir, Mode: 0o755, UID: uid, GID: gid},
			{Parent: 0, Name: "su", Type: TypeFile, Mode: 0o4755, UID: uid, GID: gid},
			{Parent: 0, Name: "sg", Type: TypeFile, Mode: 0o2755, UID: uid, GID: gid},
			{Parent: 0, Name: "ping", Type: TypeFile, Mode: 0o755, UID: uid, GID: gid,
				Xattrs: []Xattr{{capabilityXattr, []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}},
			{Parent: 0, Name: "mem", Type: TypeCharDev, Mode: 0o666, UID: uid, GID: gid, Rdev: 1<<8 | 1},
			{Parent: 0, Name: "shared", Type: TypeDir, Mode: 0o2775, UID: uid, GID: gid}, // setgid dir: fine
			{Parent: 0, Name: "plain", Type: TypeFile, Mode: 0o1644, UID: uid, GID: gid},
		}
	}
	put := func(r *Repo, fs *faultStore, m *Manifest) {
		data, err := encodeManifest(m, manifestKey("v", m.ID), r.crypt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.PutIfAbsent(ctx, manifestKey("v", m.ID), data); err != nil {
			t.Fatal(err)
		}
	}
	r, fs := newTestRepo(t, nil)
	r.restorePrivileged = false // what Open gives without the option
	m := validManifest()
	forge(m)
	put(r, fs, m)
	dst := filepath.Join(t.TempDir(), "data")
	err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{})
	for _, want := range []string{"su (setuid)", "sg (setgid)", "ping (file capabilities (security.capability))", "mem (chardev 1:1)", "--restore-privileged"} {
		if !errors.Is(err, ErrPrivileged) || !strings.Contains(err.Error(), want) {
			t.Errorf("Restore of a forged manifest: %v; want ErrPrivileged naming %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "shared") || strings.Contains(err.Error(), "plain") {
		t.Errorf("a setgid directory or a sticky file counted as a privilege: %v", err)
	}
	if _, serr := os.Lstat(dst); serr == nil {
		t.Error("the refused restore created the target")
	}

	// The host's explicit trust restores them as recorded (the setuid and
	// setgid files: the others need root to create).
	m.Nodes = m.Nodes[:3]
	m.ID = "20260801T120000Z-0123456789abcdee"
	put(r, fs, m)
	trusting, err := Open(ctx, fs, Options{RestorePrivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := trusting.Restore(ctx, "v", m.ID, dst, RestoreOptions{}); err != nil {
		t.Fatalf("Restore with RestorePrivileged: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "su")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("the trusted restore lost the setuid bit: %v, %v", fi, err)
	}

	// An encrypted store's manifests are authenticated: they restore in full.
	er, efs := newTestRepo(t, testKey)
	er.restorePrivileged = false
	em := validManifest()
	forge(em)
	em.Nodes = em.Nodes[:3]
	put(er, efs, em)
	edst := filepath.Join(t.TempDir(), "data")
	if err := er.Restore(ctx, "v", em.ID, edst, RestoreOptions{}); err != nil {
		t.Fatalf("Restore from an encrypted store: %v", err)
	}
}
