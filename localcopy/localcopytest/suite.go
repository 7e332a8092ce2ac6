// Package localcopytest is the conformance suite every localcopy.Copies
// implementation runs (the directory one without root, the btrfs one as
// root on a real btrfs): what a caller may rely on whichever filesystem
// holds the copies.
package localcopytest

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/localcopy"
)

// Run runs the suite against the Copies newCopies returns (a fresh one
// per subtest, or one shared: every subtest uses its own volume names).
func Run(t *testing.T, newCopies func(t *testing.T) localcopy.Copies) {
	tests := []struct {
		name string
		fn   func(*testing.T, localcopy.Copies)
	}{
		{"CreateExists", testCreateExists},
		{"Freeze", testFreeze},
		{"Base", testBase},
		{"RestorePopulated", func(t *testing.T, c localcopy.Copies) { testRestore(t, c, true) }},
		{"RestoreEmpty", func(t *testing.T, c localcopy.Copies) { testRestore(t, c, false) }},
		{"RestoreAbortAndStale", testRestoreAbort},
		{"MoveAside", testMoveAside},
		{"Remove", testRemove},
		{"Usage", testUsage},
		{"BadNames", testBadNames},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newCopies(t)) })
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func mustCreate(t *testing.T, c localcopy.Copies, name string) string {
	t.Helper()
	if err := c.Create(context.Background(), name, localcopy.CreateOptions{}); err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = c.Remove(context.Background(), name) })
	return c.Path(name)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func testCreateExists(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	if ok, err := c.Exists(ctx, "ce"); err != nil || ok {
		t.Fatalf("Exists before Create = %v, %v", ok, err)
	}
	p := mustCreate(t, c, "ce")
	if ok, err := c.Exists(ctx, "ce"); err != nil || !ok {
		t.Fatalf("Exists after Create = %v, %v", ok, err)
	}
	entries, err := os.ReadDir(p)
	if err != nil || len(entries) != 0 {
		t.Fatalf("new copy %s: entries %v, %v; want empty", p, entries, err)
	}
	write(t, filepath.Join(p, "f"), "x")
	if err := c.Create(ctx, "ce", localcopy.CreateOptions{}); !errors.Is(err, localcopy.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if got := read(t, filepath.Join(p, "f")); got != "x" {
		t.Fatalf("second Create changed the copy: %q", got)
	}
}

func testFreeze(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	if _, err := c.Freeze(ctx, "fz-none"); !errors.Is(err, localcopy.ErrNotFound) {
		t.Fatalf("Freeze of a missing copy = %v, want ErrNotFound", err)
	}
	p := mustCreate(t, c, "fz")
	write(t, filepath.Join(p, "a"), "before")
	f, err := c.Freeze(ctx, "fz")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p, "a"), "after")
	write(t, filepath.Join(p, "b"), "new")
	pit := c.Consistency() == localcopy.ConsistencyPointInTime
	if f.PointInTime() != pit {
		t.Fatalf("Frozen.PointInTime = %v but Consistency = %s", f.PointInTime(), c.Consistency())
	}
	if !pit {
		if f.Path != p {
			t.Fatalf("file-by-file instant reads %s, want the live copy %s", f.Path, p)
		}
		return
	}
	if got := read(t, filepath.Join(f.Path, "a")); got != "before" {
		t.Errorf("instant sees a = %q, want the content at Freeze (before)", got)
	}
	if exists(filepath.Join(f.Path, "b")) {
		t.Errorf("instant sees a file created after Freeze")
	}
	if err := os.WriteFile(filepath.Join(f.Path, "c"), nil, 0o644); err == nil {
		t.Errorf("instant %s is writable", f.Path)
	}
	if f.Generation == 0 || f.ID == "" || f.Volume != "fz" {
		t.Errorf("instant %+v lacks its identity", f)
	}
	if err := c.Release(ctx, f); err != nil {
		t.Fatal(err)
	}
	if exists(f.Path) {
		t.Errorf("released instant %s still exists", f.Path)
	}
	if got := read(t, filepath.Join(p, "a")); got != "after" {
		t.Errorf("live copy changed by Release: %q", got)
	}
}

func testBase(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	p := mustCreate(t, c, "bs")
	if _, ok, err := c.Base(ctx, "bs"); err != nil || ok {
		t.Fatalf("Base of a new copy = %v, %v; want none", ok, err)
	}
	write(t, filepath.Join(p, "a"), "1")
	f1, err := c.Freeze(ctx, "bs")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KeepBase(ctx, f1); err != nil {
		t.Fatal(err)
	}
	b, ok, err := c.Base(ctx, "bs")
	if err != nil {
		t.Fatal(err)
	}
	if c.Consistency() != localcopy.ConsistencyPointInTime {
		if ok {
			t.Fatalf("file-by-file copies keep no base, got %+v", b)
		}
		return
	}
	if !ok || b.ID != f1.ID || b.Generation != f1.Generation || read(t, filepath.Join(b.Path, "a")) != "1" {
		t.Fatalf("Base = %+v, %v; want the kept instant %+v with a = 1", b, ok, f1)
	}
	write(t, filepath.Join(p, "a"), "2")
	f2, err := c.Freeze(ctx, "bs")
	if err != nil {
		t.Fatal(err)
	}
	if f2.Generation <= f1.Generation {
		t.Errorf("later instant has generation %d ≤ %d", f2.Generation, f1.Generation)
	}
	if err := c.KeepBase(ctx, f2); err != nil {
		t.Fatal(err)
	}
	b, ok, err = c.Base(ctx, "bs")
	if err != nil || !ok || b.ID != f2.ID || read(t, filepath.Join(b.Path, "a")) != "2" {
		t.Fatalf("Base after the second KeepBase = %+v, %v, %v; want %+v", b, ok, err, f2)
	}
	if err := c.DropOlderBases(ctx, "bs"); err != nil {
		t.Fatal(err)
	}
	if b2, ok, err := c.Base(ctx, "bs"); err != nil || !ok || b2.ID != f2.ID {
		t.Fatalf("Base after DropOlderBases = %+v, %v, %v; want %+v", b2, ok, err, f2)
	}
	if len(globBases(t, b.Path)) != 1 {
		t.Errorf("after DropOlderBases, bases beside %s: %v; want only it", b.Path, globBases(t, b.Path))
	}
	if err := c.DropBase(ctx, "bs"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Base(ctx, "bs"); err != nil || ok {
		t.Fatalf("Base after DropBase = %v, %v", ok, err)
	}
	if err := c.DropBase(ctx, "bs"); err != nil {
		t.Fatalf("second DropBase: %v", err)
	}
}

func testRestore(t *testing.T, c localcopy.Copies, populated bool) {
	ctx := context.Background()
	name := "rs-empty"
	if populated {
		name = "rs-pop"
	}
	p := mustCreate(t, c, name)
	write(t, filepath.Join(p, "old"), "old")
	tg, err := c.RestoreTarget(ctx, name, populated, localcopy.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Populated && !populated {
		t.Fatalf("asked for an empty target, got a populated one")
	}
	if tg.Populated != exists(filepath.Join(tg.Path, "old")) {
		t.Fatalf("target Populated = %v but the live file is there: %v", tg.Populated, exists(filepath.Join(tg.Path, "old")))
	}
	if c.Consistency() == localcopy.ConsistencyPointInTime && populated && !tg.Populated {
		t.Fatalf("btrfs copies can always give a populated target")
	}
	write(t, filepath.Join(tg.Path, "new"), "new")
	if exists(filepath.Join(p, "new")) {
		t.Fatalf("writing the target changed the live copy")
	}
	if err := c.CommitRestore(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(c.Path(name), "new")); got != "new" {
		t.Fatalf("after CommitRestore the live copy has new = %q", got)
	}
	if exists(filepath.Join(c.Path(name), "old")) != tg.Populated {
		t.Fatalf("after CommitRestore old exists = %v, want %v", exists(filepath.Join(c.Path(name), "old")), tg.Populated)
	}
	if exists(tg.Path) {
		t.Fatalf("the previous copy is still at %s", tg.Path)
	}
	// The copy still behaves: it can be frozen and removed.
	f, err := c.Freeze(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, f); err != nil {
		t.Fatal(err)
	}
}

func testRestoreAbort(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	p := mustCreate(t, c, "ra")
	write(t, filepath.Join(p, "f"), "live")
	tg, err := c.RestoreTarget(ctx, "ra", true, localcopy.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(tg.Path, "f"), "half")
	if err := c.AbortRestore(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if exists(tg.Path) || read(t, filepath.Join(p, "f")) != "live" {
		t.Fatalf("after AbortRestore: target exists %v, live f = %q", exists(tg.Path), read(t, filepath.Join(p, "f")))
	}
	// An interrupted restore (no Abort: the process died) is cleaned up by
	// the next RestoreTarget.
	stale, err := c.RestoreTarget(ctx, "ra", false, localcopy.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tg2, err := c.RestoreTarget(ctx, "ra", false, localcopy.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exists(stale.Path) {
		t.Fatalf("stale restore target %s survived the next RestoreTarget", stale.Path)
	}
	if err := c.AbortRestore(ctx, tg2); err != nil {
		t.Fatal(err)
	}
	bogus := localcopy.Target{Volume: "ra", Path: p}
	if err := c.AbortRestore(ctx, bogus); !errors.Is(err, localcopy.ErrInvalid) {
		t.Fatalf("AbortRestore of the live copy = %v, want ErrInvalid", err)
	}
	if read(t, filepath.Join(p, "f")) != "live" {
		t.Fatalf("live copy damaged")
	}
}

func testMoveAside(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	p := mustCreate(t, c, "ma")
	write(t, filepath.Join(p, "f"), "mine")
	aside, err := c.MoveAside(ctx, "ma", "fenced-3-20261204T101500Z")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(aside) })
	if ok, _ := c.Exists(ctx, "ma"); ok {
		t.Fatalf("copy still live after MoveAside")
	}
	if read(t, filepath.Join(aside, "f")) != "mine" {
		t.Fatalf("aside copy %s lacks the data", aside)
	}
	if _, err := c.MoveAside(ctx, "ma", "diverged-x"); !errors.Is(err, localcopy.ErrNotFound) {
		t.Fatalf("MoveAside without a copy = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../x", ".base", "data", ""} {
		if _, err := c.MoveAside(ctx, "ma", bad); !errors.Is(err, localcopy.ErrInvalid) {
			t.Errorf("MoveAside to %q = %v, want ErrInvalid", bad, err)
		}
	}
	// A new copy can be made, and removing it keeps the aside copy.
	mustCreate(t, c, "ma")
	if err := c.Remove(ctx, "ma"); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(aside, "f")) != "mine" {
		t.Fatalf("Remove deleted the aside copy")
	}
}

func testRemove(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	p := mustCreate(t, c, "rm")
	if err := os.MkdirAll(filepath.Join(p, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p, "d", "e", "f"), "x")
	f, err := c.Freeze(ctx, "rm")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KeepBase(ctx, f); err != nil {
		t.Fatal(err)
	}
	f2, err := c.Freeze(ctx, "rm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RestoreTarget(ctx, "rm", true, localcopy.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "rm"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Exists(ctx, "rm"); err != nil || ok {
		t.Fatalf("Exists after Remove = %v, %v", ok, err)
	}
	for _, q := range []string{f.Path, f2.Path} {
		if f.PointInTime() && exists(q) {
			t.Errorf("instant %s survived Remove", q)
		}
	}
	if _, ok, _ := c.Base(ctx, "rm"); ok {
		t.Errorf("base survived Remove")
	}
	if err := c.Remove(ctx, "rm"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	// The name is free again.
	mustCreate(t, c, "rm")
}

func testUsage(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	p := mustCreate(t, c, "us")
	buf := make([]byte, 4<<20)
	_, _ = rand.Read(buf)
	f, err := os.Create(filepath.Join(p, "r"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s, ok := c.(interface{ Sync(context.Context) error }); ok {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	u, err := c.Usage(ctx, "us")
	if err != nil {
		t.Fatal(err)
	}
	if u.Used < 4<<20 || u.Used > 6<<20 {
		t.Fatalf("Usage after writing 4 MiB = %d bytes", u.Used)
	}
	if _, err := c.Usage(ctx, "us-none"); !errors.Is(err, localcopy.ErrNotFound) {
		t.Fatalf("Usage of a missing copy = %v, want ErrNotFound", err)
	}
}

func testBadNames(t *testing.T, c localcopy.Copies) {
	ctx := context.Background()
	for _, bad := range []string{"", "..", "../escape", "a/b", ".base"} {
		if err := c.Create(ctx, bad, localcopy.CreateOptions{}); !errors.Is(err, localcopy.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", bad, err)
		}
		if err := c.Remove(ctx, bad); !errors.Is(err, localcopy.ErrInvalid) {
			t.Errorf("Remove(%q) = %v, want ErrInvalid", bad, err)
		}
		if strings.Contains(c.Path("ok"), "..") {
			t.Errorf("Path leaks ..")
		}
	}
}

// globBases lists the directory entries beside base p whose names start
// like p's (up to its first '-'), p included.
func globBases(t *testing.T, p string) []string {
	t.Helper()
	name := filepath.Base(p)
	prefix := name[:strings.Index(name, "-")+1]
	es, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
