package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"golang.org/x/sys/unix"
)

// testdata/store-v1-plain and store-v1-encrypted are whole stores that
// format 1's Create wrote (commit cbd91b6 of the format branch, through a
// generator since removed: this package writes format 2 only): a snapshot
// of goldenTree and a child where db/copy2 changed, each object a file
// named by its key.

// goldenTree is the deterministic tree kept in the golden stores.
func goldenTree(t testing.TB, dir string) {
	t.Helper()
	bs := 64 << 10
	writeFile(t, filepath.Join(dir, "small.txt"), []byte("hello, golden store\n"), 0o640)
	writeFile(t, filepath.Join(dir, "empty"), nil, 0o600)
	table := dbLike(3*bs+5000, 21)
	copy(table[bs:2*bs], make([]byte, bs)) // a zero block: a hole
	writeFile(t, filepath.Join(dir, "db", "table"), table, 0o600)
	writeFile(t, filepath.Join(dir, "db", "copy"), dbLike(bs, 22), 0o600)
	writeFile(t, filepath.Join(dir, "db", "copy2"), dbLike(bs, 22), 0o600)
	if err := os.Symlink("db/table", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "small.txt"), filepath.Join(dir, "db", "hard")); err != nil {
		t.Fatal(err)
	}
	setOldTimes(t, dir)
}

// loadGoldenStore reads a dumped store into memory.
func loadGoldenStore(t *testing.T, dir string) transfer.ObjectStore {
	s := memstore.New()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, "config") || strings.HasPrefix(key, "snapshots/") {
			_, err = s.PutIfAbsent(context.Background(), key, data)
			return err
		}
		return s.Put(context.Background(), key, strings.NewReader(string(data)), int64(len(data)))
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// setOldTimes gives every path under dir a fixed, old mtime, deepest
// first so directory mtimes stick.
func setOldTimes(t testing.TB, dir string) {
	t.Helper()
	var paths []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		ts := []unix.Timespec{unix.NsecToTimespec(oldTime.UnixNano()), unix.NsecToTimespec(oldTime.Add(time.Duration(i) * time.Minute).UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// Stores written by format version 1 stay readable: both snapshots of
// each golden store list, verify and restore to the tree they were made
// from.
func TestGoldenStoreV1(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"store-v1-plain", nil}, {"store-v1-encrypted", testKey}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := loadGoldenStore(t, filepath.Join("testdata", tc.name))
			r, err := Open(ctx, s, Options{Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			infos, err := r.List(ctx, "pg")
			if err != nil || len(infos) != 2 {
				t.Fatalf("List = %v, %v; want 2 snapshots", infos, err)
			}
			if infos[1].Parent != infos[0].ID || infos[0].Host != "golden" || infos[0].Generation != 3 {
				t.Errorf("headers: %+v", infos)
			}
			for _, in := range infos {
				if err := r.Verify(ctx, "pg", in.ID); err != nil {
					t.Errorf("verify %s: %v", in.ID, err)
				}
			}
			base := t.TempDir()
			want := filepath.Join(base, "want")
			goldenTree(t, want)
			writeFile(t, filepath.Join(want, "db", "copy2"), dbLike(64<<10, 23), 0o600)
			setOldTimes(t, want)
			got := filepath.Join(base, "got")
			if err := r.Restore(ctx, "pg", infos[1].ID, got, RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, scanTree(t, want), scanTree(t, got))
		})
	}
}
