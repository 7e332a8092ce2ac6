package catalog_test

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/transfer"
)

func put(t *testing.T, st transfer.ObjectStore, key, val string) {
	t.Helper()
	if err := st.Put(context.Background(), key, strings.NewReader(val), int64(len(val))); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, st transfer.ObjectStore, prefix string) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), prefix, func(o transfer.ObjectInfo) error { out = append(out, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func read(t *testing.T, st transfer.ObjectStore, key string) string {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// A removed volume leaves the listing, keeps everything in the trash, comes
// back whole, and is purged only after its grace period.
func TestTrashRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if _, _, err := catalog.Create(ctx, st, vol("db")); err != nil {
		t.Fatal(err)
	}
	put(t, st, "volumes/db/head.json", "head")
	put(t, st, "snapshots/db/s1", "manifest1")
	put(t, st, "snapshots/db/s2", "manifest2")
	put(t, st, "index/db/initial/p1", "index")
	put(t, st, "snapshots/dbx/s1", "other volume") // a name that shares the prefix
	put(t, st, "packs/ab/p1", "shared pack")

	removed := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	id := catalog.TrashID(removed)
	move := []string{catalog.Key("db"), "snapshots/db/", "index/db/"}
	copies := []string{"volumes/db/head.json"}
	if err := catalog.MoveToTrash(ctx, st, "db", id, move, copies); err != nil {
		t.Fatal(err)
	}
	// Again, as a retry after an interruption would: nothing changes.
	if err := catalog.MoveToTrash(ctx, st, "db", id, move, copies); err != nil {
		t.Fatal(err)
	}
	if names, _ := catalog.Names(ctx, st); len(names) != 0 {
		t.Errorf("removed volume still listed: %v", names)
	}
	if got := keys(t, st, "snapshots/"); !reflect.DeepEqual(got, []string{"snapshots/dbx/s1"}) {
		t.Errorf("snapshots left: %v", got)
	}
	if read(t, st, "volumes/db/head.json") != "head" || read(t, st, "packs/ab/p1") != "shared pack" {
		t.Error("head record or shared pack was moved")
	}
	if got := read(t, st, catalog.TrashKey("db", id, "snapshots/db/s2")); got != "manifest2" {
		t.Errorf("trash has %q", got)
	}
	if got := read(t, st, catalog.TrashCopyKey("db", id, "volumes/db/head.json")); got != "head" {
		t.Errorf("trash's copy of the head has %q", got)
	}
	put(t, st, "volumes/db/head.json", "head changed since")
	entries, err := catalog.Trash(ctx, st, "db")
	if err != nil || len(entries) != 1 || entries[0].ID != id || !entries[0].Removed.Equal(removed) {
		t.Fatalf("Trash = %+v, %v", entries, err)
	}

	// Undelete refuses while the name exists again, then brings all back.
	if _, _, err := catalog.Create(ctx, st, vol("db")); err != nil {
		t.Fatal(err)
	}
	other := vol("db")
	other.CreatedBy = "hostZ"
	st.Delete(ctx, catalog.Key("db"))
	if _, _, err := catalog.Create(ctx, st, other); err != nil {
		t.Fatal(err)
	}
	if err := catalog.RestoreFromTrash(ctx, st, "db", id); err == nil || !strings.Contains(err.Error(), "exists again") {
		t.Fatalf("undelete over a new volume: %v", err)
	}
	st.Delete(ctx, catalog.Key("db"))
	if err := catalog.RestoreFromTrash(ctx, st, "db", id); err != nil {
		t.Fatal(err)
	}
	if got, err := catalog.Get(ctx, st, "db"); err != nil || got.CreatedBy != "hostA" {
		t.Errorf("undeleted record %+v, %v", got, err)
	}
	if got := keys(t, st, "snapshots/db/"); !reflect.DeepEqual(got, []string{"snapshots/db/s1", "snapshots/db/s2"}) {
		t.Errorf("undeleted snapshots: %v", got)
	}
	if got := keys(t, st, catalog.TrashPrefix); len(got) != 0 {
		t.Errorf("trash not cleared: %v", got)
	}
	if got := read(t, st, "volumes/db/head.json"); got != "head changed since" {
		t.Errorf("undelete put the copy of the head back: %q", got)
	}
	if err := catalog.RestoreFromTrash(ctx, st, "db", id); !errors.Is(err, catalog.ErrNotFound) && err != nil {
		t.Errorf("second undelete: %v", err)
	}
}

func TestPurgeTrashKeepsRecentEntries(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	old, recent := time.Now().Add(-200*time.Hour), time.Now().Add(-time.Hour)
	for _, e := range []struct {
		name string
		at   time.Time
	}{{"a", old}, {"b", recent}, {"a", recent}} {
		put(t, st, catalog.TrashKey(e.name, catalog.TrashID(e.at), "volumes/"+e.name+"/volume.json"), "{}")
		put(t, st, catalog.TrashKey(e.name, catalog.TrashID(e.at), "snapshots/"+e.name+"/s1"), "m")
	}
	purged, err := catalog.PurgeTrash(ctx, st, time.Now().Add(-168*time.Hour))
	if err != nil || len(purged) != 1 || purged[0].Name != "a" || purged[0].ID != catalog.TrashID(old) {
		t.Fatalf("purged %+v, %v", purged, err)
	}
	all, _ := catalog.Trash(ctx, st, "")
	if len(all) != 2 || all[0].ID != catalog.TrashID(recent) {
		t.Errorf("left %+v", all)
	}
	if got := keys(t, st, catalog.TrashPrefix+"a/"+catalog.TrashID(old)); len(got) != 0 {
		t.Errorf("purged entry left %v", got)
	}
}

// A move finished long ago (its entry purged since) leaves no new entry
// behind when a host runs it again.
func TestMoveToTrashAfterPurgeDoesNothing(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	put(t, st, "volumes/db/head.json", "tombstone")
	id := catalog.TrashID(time.Now())
	if err := catalog.MoveToTrash(ctx, st, "db", id, []string{catalog.Key("db"), "snapshots/db/"}, []string{"volumes/db/head.json"}); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, st, catalog.TrashPrefix); len(got) != 0 {
		t.Errorf("an empty move made a trash entry: %v", got)
	}
}
