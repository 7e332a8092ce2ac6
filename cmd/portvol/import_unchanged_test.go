package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// storeState is every object's key and ETag.
func storeState(t *testing.T, st transfer.ObjectStore) []string {
	t.Helper()
	var out []string
	err := st.List(context.Background(), "", func(oi transfer.ObjectInfo) error {
		out = append(out, oi.Key+" "+oi.ETag)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An import of a directory that equals the head, proven by the stat
// cache of the import that made the head, writes nothing to the store (no
// lease, no probe, no snapshot) and names that head; a volume held by
// another host is still refused, and a change is still published.
func importUnchangedWritesNothing(t *testing.T, ts testStore) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	sc := filepath.Join(base, "import.statcache")
	initStore(t, ts.url)
	imp := func(extra ...string) cliResult {
		return cli(t, append([]string{"import", "--store", ts.url, "--stat-cache", sc, src, "pg"}, extra...)...)
	}
	// Files younger than the racy window (100 ms) at the import's start
	// are read again every time: judging by stat needs older ones.
	time.Sleep(150 * time.Millisecond)
	first := decode[importResult](t, imp("--json").ok(t))

	before := storeState(t, ts.store)
	again := decode[importResult](t, imp("--json").ok(t))
	if !again.Unchanged || again.Snapshot != first.Snapshot || again.Generation != first.Generation ||
		again.Lease != leaseNotTaken || again.Files != first.Files || again.FilesRead != 0 || again.UploadedBytes != 0 {
		t.Errorf("unchanged import: %+v (first %+v)", again, first)
	}
	if after := storeState(t, ts.store); !slices.Equal(before, after) {
		t.Errorf("an unchanged import wrote to the store:\nbefore %q\nafter  %q", before, after)
	}
	if out := imp().ok(t).stdout; !strings.Contains(out, "unchanged") || !strings.Contains(out, first.Snapshot) || !strings.Contains(out, "nothing was written") {
		t.Errorf("unchanged import printed %q", out)
	}

	// Held by a plugin: refused as before, though nothing changed.
	m, err := lease.New(ts.store, lease.Options{Host: "plugin-host"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Acquire(context.Background(), "pg")
	if err != nil {
		t.Fatal(err)
	}
	imp().fails(t, exitHeld, "import refused", `held by host "plugin-host"`)
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}

	// -o options are checked against the volume's on the usual path.
	imp("-o", "snapshot_interval=7m").fails(t, exitError, "already exists with options")

	// A change is published as a new head.
	if err := os.WriteFile(filepath.Join(src, "base/1/1259"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := decode[importResult](t, imp("--json").ok(t))
	if changed.Unchanged || changed.Snapshot == first.Snapshot || changed.Parent != first.Snapshot || changed.Lease != string("acquired") {
		t.Errorf("import after a change: %+v", changed)
	}
	if o := head(t, ts.store, "pg"); o.Record.Head != changed.Snapshot || o.Record.State != lease.Released {
		t.Errorf("head record after the change: %+v", o.Record)
	}
}

func TestImportUnchangedWritesNothing(t *testing.T) { importUnchangedWritesNothing(t, localStore(t)) }
func TestS3ImportUnchangedWritesNothing(t *testing.T) {
	ts, _ := s3Store(t)
	importUnchangedWritesNothing(t, ts)
}
