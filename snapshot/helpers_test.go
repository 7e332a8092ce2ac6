package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// faultStore wraps a store to count traffic and inject failures.
type faultStore struct {
	transfer.ObjectStore
	puts, putBytes atomic.Int64
	gets, getBytes atomic.Int64
	failPutsAfter  atomic.Int64 // >0: Puts after this many fail
}

var errInjected = errors.New("injected failure")

func (s *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if n := s.failPutsAfter.Load(); n > 0 && s.puts.Load() >= n {
		return fmt.Errorf("put %q: %w", key, errInjected)
	}
	if err := s.ObjectStore.Put(ctx, key, r, size); err != nil {
		return err
	}
	s.puts.Add(1)
	s.putBytes.Add(size)
	return nil
}

func (s *faultStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if n := s.failPutsAfter.Load(); n > 0 && s.puts.Load() >= n {
		return "", fmt.Errorf("put %q: %w", key, errInjected)
	}
	etag, err := s.ObjectStore.PutIfAbsent(ctx, key, data)
	if err == nil {
		s.puts.Add(1)
		s.putBytes.Add(int64(len(data)))
	}
	return etag, err
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *faultStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.ObjectStore.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	s.gets.Add(1)
	return countingReader{rc, &s.getBytes}, nil
}

func (s *faultStore) resetCounts() {
	s.puts.Store(0)
	s.putBytes.Store(0)
	s.gets.Store(0)
	s.getBytes.Store(0)
}

// keys lists the store's keys under prefix.
func storeKeys(t *testing.T, s transfer.ObjectStore, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(oi transfer.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// testKey is a fixed key for tests and golden files.
var testKey = bytes.Repeat([]byte{0x42}, 32)

func newTestRepo(t testing.TB, key []byte) (*Repo, *faultStore) {
	t.Helper()
	fs := &faultStore{ObjectStore: memstore.New()}
	return openTestRepo(t, fs, key), fs
}

func openTestRepo(t testing.TB, fs transfer.ObjectStore, key []byte) *Repo {
	t.Helper()
	ctx := context.Background()
	if err := Init(ctx, fs, InitOptions{Key: key}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, fs, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	r.racyWindow = 10 * time.Millisecond // test trees are written just before they are snapshotted
	// Test trees hold a setuid file (and device nodes, as root) that must
	// round-trip: the tests trust the stores they write themselves.
	// TestPlainStoreDoesNotPlantPrivileges turns this off.
	r.restorePrivileged = true
	return r
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// dbLike returns n bytes that compress like database pages: text-ish
// rows with repeated structure.
func dbLike(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%08d|%-20s|%10d|%s\n", r.IntN(1e8), "account", r.IntN(1e9), strings.Repeat("x", r.IntN(40)))
	}
	return b.Bytes()[:n]
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

var oldTime = time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)

// xattrsSupported reports whether dir's filesystem takes user xattrs.
func xattrsSupported(dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	os.WriteFile(p, nil, 0o600)
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

// makeTree builds a tree with every kind of entry Create records.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	bs := defaultBlockSize
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	writeFile(t, filepath.Join(dir, "empty"), nil, 0o644)
	writeFile(t, filepath.Join(dir, "small.txt"), []byte("hello, volume\n"), 0o640)
	writeFile(t, filepath.Join(dir, "big.bin"), randBytes(3*bs+12345), 0o600)
	writeFile(t, filepath.Join(dir, "db", "base", "16384", "1259"), dbLike(2*bs+8192, 1), 0o600)
	writeFile(t, filepath.Join(dir, "db", "base", "16384", "1249"), dbLike(bs, 2), 0o600)
	writeFile(t, filepath.Join(dir, "db", "dup-of-1249"), dbLike(bs, 2), 0o600) // same chunk twice
	writeFile(t, filepath.Join(dir, "zeros"), make([]byte, bs+100), 0o644)      // all-zero data, not sparse

	// Sparse: data, a hole of several blocks, data, a trailing hole.
	sp := filepath.Join(dir, "sparse.img")
	f, err := os.Create(sp)
	must(err)
	_, err = f.WriteAt(randBytes(5000), 0)
	must(err)
	_, err = f.WriteAt(randBytes(bs/2), int64(6*bs+bs/4))
	must(err)
	must(f.Truncate(int64(10 * bs)))
	must(f.Close())

	// Modes, owners.
	writeFile(t, filepath.Join(dir, "bin", "setuid"), []byte("#!/bin/sh\n"), 0o755)
	must(os.Chmod(filepath.Join(dir, "bin", "setuid"), 0o4755|os.ModeSetuid))
	must(unix.Chmod(filepath.Join(dir, "bin", "setuid"), 0o4755))
	must(unix.Chmod(filepath.Join(dir, "bin"), 0o2755))
	must(os.MkdirAll(filepath.Join(dir, "tmp"), 0o777))
	must(unix.Chmod(filepath.Join(dir, "tmp"), 0o1777))
	writeFile(t, filepath.Join(dir, "owned"), []byte("owned by 1234:5678"), 0o600)
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
		must(os.Lchown(filepath.Join(dir, "db"), 70, 70))
		must(os.Lchown(filepath.Join(dir, "db", "base", "16384", "1259"), 70, 70))
	}
	must(os.MkdirAll(filepath.Join(dir, "emptydir"), 0o700))

	// Links.
	must(os.Symlink("small.txt", filepath.Join(dir, "link-rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "link-abs")))
	must(os.Symlink("../../outside", filepath.Join(dir, "db", "link-dangling")))
	must(os.Link(filepath.Join(dir, "small.txt"), filepath.Join(dir, "hard1")))
	must(os.Link(filepath.Join(dir, "small.txt"), filepath.Join(dir, "db", "hard2")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(dir, "link-rel"), 1234, 5678))
	}

	if xattrsSupported(dir) {
		must(unix.Setxattr(filepath.Join(dir, "small.txt"), "user.mime", []byte("text/plain"), 0))
		must(unix.Setxattr(filepath.Join(dir, "db"), "user.role", []byte("data\x00binary"), 0))
		must(unix.Setxattr(dir, "user.volume", []byte("root"), 0))
	}

	// Times last, deepest first, so directory mtimes stick.
	var paths []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		must(err)
		paths = append(paths, p)
		return nil
	})
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		ts := []unix.Timespec{unix.NsecToTimespec(oldTime.UnixNano()), unix.NsecToTimespec(oldTime.Add(time.Duration(i) * time.Minute).UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// entry is what a user can observe of one path.
type entry struct {
	Type   string
	Mode   uint32
	UID    uint32
	GID    uint32
	Mtime  int64
	Size   int64
	Data   string // sha of content, or link target
	LinkTo string // first path with the same inode (hardlinks)
	Xattrs string
	Rdev   uint64
	Blocks int64 // 512-byte blocks allocated, for sparse checks
	Inode  uint64
}

// scanTree describes every path under dir.
func scanTree(t testing.TB, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	inodes := map[uint64]string{}
	var paths []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		e := entry{Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano(), Blocks: st.Blocks, Inode: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFREG:
			e.Type, e.Size = "file", st.Size
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			e.Data = fmt.Sprintf("%x", ID(sumPlain(data)))
			if first, ok := inodes[st.Ino]; ok && st.Nlink > 1 {
				e.LinkTo = first
			} else {
				inodes[st.Ino] = rel
			}
		case unix.S_IFLNK:
			e.Type = "symlink"
			e.Data, _ = os.Readlink(p)
		case unix.S_IFIFO:
			e.Type = "fifo"
		default:
			e.Type = fmt.Sprintf("mode %o", st.Mode)
			e.Rdev = st.Rdev
		}
		if e.Type != "symlink" {
			xs, err := readXattrs(p, -1)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range xs {
				e.Xattrs += x.Name + "=" + string(x.Value) + ";"
			}
		}
		out[rel] = e
	}
	return out
}

// compareTrees fails unless got holds what want holds: types, content,
// modes, owners, mtimes, link targets, hardlink groups, xattrs.
func compareTrees(t testing.TB, want, got map[string]entry) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing after restore", p)
			continue
		}
		w.Blocks, g.Blocks, w.Inode, g.Inode = 0, 0, 0, 0
		if w != g {
			t.Errorf("%s:\n want %+v\n got  %+v", p, w, g)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected after restore", p)
		}
	}
}

func sumPlain(b []byte) [32]byte { return blake3.Sum256(b) }

func newMem() transfer.ObjectStore { return memstore.New() }

// createFiles writes files (name to content) into src and snapshots it
// as the successor of parent ("" for the first); a successor's files get
// old times, so that they are not racy.
func createFiles(t testing.TB, r *Repo, src string, files map[string][]byte, parent string) *Manifest {
	t.Helper()
	for name, data := range files {
		writeFile(t, filepath.Join(src, name), data, 0o600)
	}
	if parent != "" {
		setOldTimes(t, src)
	}
	m, err := r.Create(context.Background(), "v", src, CreateOptions{Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkFiles fails unless each of files (name to content) in dir holds
// exactly that content; it names the first block that differs.
func checkFiles(t testing.TB, dir string, bs int, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, want) {
			continue
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%s in %s differs from the snapshot from byte %d (block %d) on", name, dir, i, i/bs)
			}
		}
		t.Fatalf("%s in %s: %d bytes, the snapshot %d", name, dir, len(got), len(want))
	}
}
