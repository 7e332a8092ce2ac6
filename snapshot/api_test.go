package snapshot

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

func TestListAndProgress(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, testKey)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a"), dbLike(3<<20, 1), 0o600)

	var mu sync.Mutex
	var last Progress
	m1, err := r.Create(ctx, "v", src, CreateOptions{Host: "h1", Generation: 1, Progress: func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if last.Phase != "finish" || last.Bytes != 3<<20 || last.BytesDone != 3<<20 || last.Transferred == 0 {
		t.Errorf("final progress %+v", last)
	}
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, Host: "h2", Generation: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, "other", src, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	infos, err := r.List(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].ID != m1.ID || infos[1].ID != m2.ID || infos[1].Parent != m1.ID ||
		infos[1].Host != "h2" || infos[1].Generation != 2 || infos[0].Stats.Bytes != 3<<20 {
		t.Errorf("List = %+v", infos)
	}
	if infos, err := r.List(ctx, "none"); err != nil || len(infos) != 0 {
		t.Errorf("List of a volume without snapshots = %v, %v", infos, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, nil)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "a"), []byte("a"), 0o600)
	for name, err := range map[string]error{
		"bad volume": func() error { _, err := r.Create(ctx, "../x", src, CreateOptions{}); return err }(),
		"bad parent": func() error { _, err := r.Create(ctx, "v", src, CreateOptions{Parent: "latest"}); return err }(),
		"cache inside": func() error {
			_, err := r.Create(ctx, "v", src, CreateOptions{StatCache: filepath.Join(src, "c")})
			return err
		}(),
		"bad id":             r.Restore(ctx, "v", "../../etc", filepath.Join(dir, "d"), RestoreOptions{}),
		"restore cache in":   r.Restore(ctx, "v", "20260101T000000Z-0000000000000000", src, RestoreOptions{StatCache: filepath.Join(src, "x")}),
		"load bad volume":    func() error { _, err := r.Load(ctx, "a/b", "20260101T000000Z-0000000000000000"); return err }(),
		"verify bad id":      r.Verify(ctx, "v", "x"),
		"restore onto file":  r.Restore(ctx, "v", mustCreate(t, r, src), filepath.Join(src, "a"), RestoreOptions{}),
		"list bad volume":    func() error { _, err := r.List(ctx, ""); return err }(),
		"missing parent dir": func() error { _, err := r.Create(ctx, "v", filepath.Join(dir, "nope"), CreateOptions{}); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "missing parent dir" && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := r.Load(ctx, "v", "20260101T000000Z-0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of an absent snapshot: %v", err)
	}
	if _, err := r.Create(ctx, "v", src, CreateOptions{Parent: "20260101T000000Z-0000000000000000"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Create with an absent parent: %v", err)
	}
}

func mustCreate(t *testing.T, r *Repo, src string) string {
	m, err := r.Create(context.Background(), "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func TestParseKey(t *testing.T) {
	raw := testKey
	for name, in := range map[string][]byte{
		"raw":    raw,
		"hex":    []byte("4242424242424242424242424242424242424242424242424242424242424242\n"),
		"base64": []byte("QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n"),
	} {
		k, err := ParseKey(in)
		if err != nil || string(k) != string(raw) {
			t.Errorf("%s: %x, %v", name, k, err)
		}
	}
	for _, bad := range []string{"", "short", "42424242", string(make([]byte, 31))} {
		if _, err := ParseKey([]byte(bad)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) = %v", bad, err)
		}
	}
}

func TestVolumePrefixesAndIDTime(t *testing.T) {
	got := VolumePrefixes("db")
	if len(got) != 2 || got[0] != snapshotsPrefix("db") || got[1] != "index/db/" || !strings.HasPrefix(indexPrefix("db", ""), got[1]) || !strings.HasPrefix(manifestKey("db", "x"), got[0]) {
		t.Errorf("VolumePrefixes = %v", got)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if ts, ok := IDTime(newSnapshotID(at)); !ok || !ts.Equal(at) {
		t.Errorf("IDTime = %v, %v; want %v", ts, ok, at)
	}
	if _, ok := IDTime("s1"); ok {
		t.Error("IDTime accepted a malformed ID")
	}
}

// A store of a newer format is neither read nor written by this build: the
// error names both versions and says to upgrade.
func TestNewerStoreFormat(t *testing.T) {
	ctx := context.Background()
	for name, config := range map[string]string{
		"newer version": `{"format":"portvol-snapshot-store","version":2,"store_id":"00112233445566778899aabbccddeeff","chunking":"fixed","block_size":1048576,"compression":"zstd","encryption":"none"}`,
		"newer fields":  `{"format":"portvol-snapshot-store","version":3,"store_id":"00112233445566778899aabbccddeeff","chunking":"cdc","chunk_sizes":[1,2,3]}`,
	} {
		t.Run(name, func(t *testing.T) {
			st := memstore.New()
			if _, err := st.PutIfAbsent(ctx, configKey, []byte(config)); err != nil {
				t.Fatal(err)
			}
			for op, err := range map[string]error{
				"Open": func() error { _, err := Open(ctx, st, Options{}); return err }(),
				"Init": Init(ctx, st, InitOptions{}),
			} {
				if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "this portvol knows format version 1") ||
					!strings.Contains(err.Error(), "upgrade portvol") || !regexp.MustCompile(`format version [23],`).MatchString(err.Error()) {
					t.Errorf("%s of a newer store: %v; want ErrUnsupportedVersion naming both versions", op, err)
				}
			}
			n := 0
			_ = st.List(ctx, "", func(transfer.ObjectInfo) error { n++; return nil })
			if n != 1 {
				t.Errorf("%d objects in the store after refusing it; want only its config", n)
			}
		})
	}
}
