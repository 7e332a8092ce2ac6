package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A 1 MiB change inside a 64 MiB file costs less than 8 MiB of uploads.
func TestIncrementalSmallChange(t *testing.T) {
	ctx := context.Background()
	r, fs := newTestRepo(t, testKey)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	big := filepath.Join(src, "base", "table")
	writeFile(t, big, randBytes(64<<20), 0o600)
	writeFile(t, filepath.Join(src, "other"), dbLike(3<<20, 9), 0o600)
	cache := filepath.Join(base, "statcache")
	time.Sleep(20 * time.Millisecond) // past the (test-sized) racy window

	m1, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if fs.putBytes.Load() < 64<<20 {
		t.Fatalf("first snapshot uploaded only %d bytes", fs.putBytes.Load())
	}

	// Overwrite 1 MiB in place, not block-aligned (touches two blocks).
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(randBytes(1<<20), 20<<20+300_000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	fs.resetCounts()
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if n := fs.putBytes.Load(); n >= 8<<20 {
		t.Errorf("incremental snapshot uploaded %d bytes, want < 8 MiB", n)
	}
	if m2.Stats.FilesRead != 1 {
		t.Errorf("read %d files, want only the changed one", m2.Stats.FilesRead)
	}
	if m2.Parent != m1.ID {
		t.Errorf("parent %q, want %q", m2.Parent, m1.ID)
	}
	want := scanTree(t, src)
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, want, scanTree(t, dst))
}

// A snapshot of an unchanged tree reads no file and uploads nothing but
// its manifest — with the stat cache, and with only the parent manifest
// (same host, same directory).
func TestNoChangeSnapshot(t *testing.T) {
	for _, useCache := range []bool{true, false} {
		name := "parent-manifest"
		if useCache {
			name = "statcache"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, fs := newTestRepo(t, nil)
			base := t.TempDir()
			src := filepath.Join(base, "src")
			makeTree(t, src)
			writeFile(t, filepath.Join(src, "large"), dbLike(20<<20, 3), 0o600)
			cache := ""
			if useCache {
				cache = filepath.Join(base, "statcache")
			}
			time.Sleep(20 * time.Millisecond)
			m1, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			fs.resetCounts()
			m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if m2.Stats.FilesRead != 0 || m2.Stats.BytesRead != 0 {
				t.Errorf("no-change snapshot read %d files (%d bytes)", m2.Stats.FilesRead, m2.Stats.BytesRead)
			}
			if keys := storeKeys(t, fs, "packs/"); fs.puts.Load() != 1 {
				t.Errorf("no-change snapshot made %d uploads (%d bytes); packs now %d", fs.puts.Load(), fs.putBytes.Load(), len(keys))
			}
			if len(m2.Chunks) != len(m1.Chunks) || m2.Stats.DataBytes != m1.Stats.DataBytes {
				t.Errorf("chunk table changed: %d -> %d chunks", len(m1.Chunks), len(m2.Chunks))
			}
			want := scanTree(t, src)
			dst := filepath.Join(base, "dst")
			if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, want, scanTree(t, dst))
		})
	}
}

// A file that changed within the timestamp granularity of the previous
// snapshot's start is read again even though its stat looks unchanged.
func TestRacyFileIsReread(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, nil)
	r.racyWindow = time.Hour // every file just written is "racy"
	base := t.TempDir()
	src := filepath.Join(base, "src")
	writeFile(t, filepath.Join(src, "f"), []byte("version 1"), 0o600)
	cache := filepath.Join(base, "statcache")
	m1, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Stats.FilesRead != 1 {
		t.Errorf("racy file was not re-read (read %d)", m2.Stats.FilesRead)
	}
}

// A file rewritten with the same size and its mtime put back is still
// noticed (its ctime changed).
func TestChangedFileWithRestoredMtime(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, nil)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	p := filepath.Join(src, "f")
	writeFile(t, p, []byte("version 1"), 0o600)
	ts := []unix.Timespec{unix.NsecToTimespec(oldTime.UnixNano()), unix.NsecToTimespec(oldTime.UnixNano())}
	unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
	time.Sleep(20 * time.Millisecond)
	m1, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	os.WriteFile(p, []byte("version 2"), 0o600)
	unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
	time.Sleep(20 * time.Millisecond)
	m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(base, "dst")
	if err := r.Restore(ctx, "v", m2.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "version 2" {
		t.Errorf("restored %q, want the rewritten content", b)
	}
}

func TestNotRacy(t *testing.T) {
	taken := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	fine := func(d time.Duration) int64 { return taken - int64(d) + 123 } // sub-second part
	coarse := func(d time.Duration) int64 { return taken - int64(d) }     // whole seconds
	for _, tc := range []struct {
		name         string
		mtime, ctime int64
		checkCtime   bool
		want         bool
	}{
		{"old", fine(time.Hour), fine(time.Hour), true, true},
		{"mtime in window", fine(50 * time.Millisecond), fine(time.Hour), true, false},
		{"ctime in window", fine(time.Hour), fine(50 * time.Millisecond), true, false},
		{"ctime in window, restore cache", fine(time.Hour), fine(50 * time.Millisecond), false, true},
		{"after taken", fine(-time.Second), fine(-time.Second), true, false},
		{"just outside", fine(150 * time.Millisecond), fine(150 * time.Millisecond), true, true},
		{"coarse fs, 1 s old", coarse(time.Second), coarse(time.Second), true, false},
		{"coarse fs, 3 s old", coarse(3 * time.Second), coarse(3 * time.Second), true, true},
	} {
		if got := notRacy(statEntry{Mtime: tc.mtime, Ctime: tc.ctime}, taken, tc.checkCtime, defaultRacyWindow); got != tc.want {
			t.Errorf("%s: notRacy = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// With CreateOptions.Frozen, a file written just before the instant was
// taken is re-read by the next snapshot, however late Create started
// reading: the instant's time, not Create's start, is the moment the
// stat cache and the manifest record.
func TestFrozenMomentMakesFilesRacy(t *testing.T) {
	ctx := context.Background()
	for _, frozen := range []bool{false, true} {
		r, _ := newTestRepo(t, nil)
		late := time.Now().Add(time.Hour)
		r.now = func() time.Time { return late } // Create starts long after the writes
		base := t.TempDir()
		src := filepath.Join(base, "src")
		writeFile(t, filepath.Join(src, "f"), []byte("version 1"), 0o600)
		co := CreateOptions{StatCache: filepath.Join(base, "statcache")}
		if frozen {
			co.Frozen = time.Now() // the instant: just after the write
		}
		m1, err := r.Create(ctx, "v", src, co)
		if err != nil {
			t.Fatal(err)
		}
		if frozen && !m1.Started.Equal(co.Frozen) {
			t.Errorf("manifest started %s, want the instant's %s", m1.Started, co.Frozen)
		}
		for _, cache := range []string{co.StatCache, ""} { // the stat cache, then the parent manifest
			m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m1.ID, StatCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint64{false: 0, true: 1}[frozen]; m2.Stats.FilesRead != want {
				t.Errorf("frozen %v, cache %q: read %d files, want %d", frozen, cache, m2.Stats.FilesRead, want)
			}
		}
	}
}
