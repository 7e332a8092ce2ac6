package metadata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portvol.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestVolumeRecordsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v := Volume{Name: "v1", Options: map[string]string{"takeover": "manual"}, CreatedAt: created, CreatedBy: "h1", Local: LocalPresent}
	if err := db.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddMount(ctx, "v1", "id-a"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetHostID(ctx, "host-1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.Volume(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(created) || got.Options["takeover"] != "manual" || got.CreatedBy != "h1" || got.Local != LocalPresent {
		t.Errorf("after reopen got %+v, want %+v", got, v)
	}
	m, err := db2.Mounts(ctx, "v1")
	if err != nil || m["id-a"] != 1 {
		t.Errorf("mounts after reopen = %v, %v; want id-a:1", m, err)
	}
	id, err := db2.HostID(ctx)
	if err != nil || id != "host-1" {
		t.Errorf("host id after reopen = %q, %v", id, err)
	}
}

func TestCreateVolumeTwiceFails(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	if err := db.CreateVolume(ctx, Volume{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	err := db.CreateVolume(ctx, Volume{Name: "v", CreatedBy: "other"})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, _ := db.Volume(ctx, "v")
	if got.CreatedBy != "" {
		t.Errorf("second create overwrote the record: %+v", got)
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	if _, err := db.Volume(ctx, "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Volume: %v, want ErrNotFound naming the volume", err)
	}
	if err := db.DeleteVolume(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteVolume: %v", err)
	}
	if err := db.UpdateVolume(ctx, "nope", func(*Volume) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateVolume: %v", err)
	}
	if _, err := db.AddMount(ctx, "nope", "id"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddMount: %v", err)
	}
	if _, err := db.HostID(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostID: %v", err)
	}
}

func TestMountCountsPerID(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	if err := db.CreateVolume(ctx, Volume{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	// docker cp into a running container: the same ID twice.
	for _, id := range []string{"a", "a", "b"} {
		if _, err := db.AddMount(ctx, "v", id); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := db.Mounts(ctx, "v")
	if m["a"] != 2 || m["b"] != 1 || m.Total() != 3 {
		t.Fatalf("counts = %v, want a:2 b:1", m)
	}

	m, found, err := db.RemoveMount(ctx, "v", "a")
	if err != nil || !found || m["a"] != 1 || m.Total() != 2 {
		t.Fatalf("after one unmount of a: %v found=%v err=%v", m, found, err)
	}
	m, found, err = db.RemoveMount(ctx, "v", "unknown")
	if err != nil || found || m.Total() != 2 {
		t.Fatalf("unmount of unknown ID changed something: %v found=%v err=%v", m, found, err)
	}
	if _, found, err = db.RemoveMount(ctx, "no-such-volume", "a"); err != nil || found {
		t.Fatalf("unmount on unknown volume: found=%v err=%v", found, err)
	}
	db.RemoveMount(ctx, "v", "a")
	m, _, _ = db.RemoveMount(ctx, "v", "b")
	if len(m) != 0 {
		t.Fatalf("all unmounted, counts = %v", m)
	}
	all, err := db.AllMounts(ctx)
	if err != nil || len(all) != 0 {
		t.Fatalf("AllMounts = %v, %v; want empty", all, err)
	}
}

func TestDeleteVolumeDropsMounts(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	db.CreateVolume(ctx, Volume{Name: "v"})
	db.AddMount(ctx, "v", "a")
	if err := db.DeleteVolume(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	// A new volume of the same name starts with no mounts.
	db.CreateVolume(ctx, Volume{Name: "v"})
	if m, _ := db.Mounts(ctx, "v"); len(m) != 0 {
		t.Fatalf("recreated volume inherited mounts %v", m)
	}
	vs, _ := db.Volumes(ctx)
	if len(vs) != 1 {
		t.Fatalf("Volumes = %v", vs)
	}
}

func TestUpdateVolume(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	db.CreateVolume(ctx, Volume{Name: "v", Local: LocalPresent})
	err := db.UpdateVolume(ctx, "v", func(v *Volume) error {
		v.SizeBytes = 42
		v.Name = "renamed"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Volume(ctx, "v")
	if err != nil || got.SizeBytes != 42 {
		t.Fatalf("got %+v, %v", got, err)
	}
	boom := errors.New("boom")
	if err := db.UpdateVolume(ctx, "v", func(v *Volume) error { v.SizeBytes = 1; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateVolume with failing fn: %v", err)
	}
	if got, _ := db.Volume(ctx, "v"); got.SizeBytes != 42 {
		t.Fatalf("failed update was stored: %+v", got)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error does not name the owner's pid: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v", d)
	}
}

func TestCancelledContextWritesNothing(t *testing.T) {
	db, _ := openTemp(t)
	db.CreateVolume(context.Background(), Volume{Name: "v"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.AddMount(ctx, "v", "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddMount with cancelled ctx: %v", err)
	}
	if m, _ := db.Mounts(context.Background(), "v"); len(m) != 0 {
		t.Fatalf("cancelled AddMount stored %v", m)
	}
}

func TestSchemaMismatchRefused(t *testing.T) {
	db, path := openTemp(t)
	db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), `"99"`) {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestMigrationFieldsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	v := Volume{Name: "v", Local: LocalReleasing, Incarnation: "2026-01-02T03:04:05.123456789Z hostA",
		LocalSnapshot: "20260102T030405Z-0123456789abcdef", Dirty: true, Generation: 7,
		Aside: []string{"volumes/v/fenced-6-20260102T030405Z"}, LastError: "boom", LastErrorAt: time.Unix(5, 0).UTC()}
	if err := db.CreateVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.Volume(ctx, "v")
	if err != nil || got.Local != LocalReleasing || got.Incarnation != v.Incarnation || got.LocalSnapshot != v.LocalSnapshot ||
		!got.Dirty || got.Generation != 7 || len(got.Aside) != 1 || got.LastError != "boom" || !got.LastErrorAt.Equal(v.LastErrorAt) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
}

// A host remembers the store it joined; the permission to create one lasts
// from the first start until it joins, and survives a restart.
func TestJoinedStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "portvol.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := db.JoinedStore(ctx); err != nil || s != (Store{}) {
		t.Fatalf("new database: %+v, %v; want nothing joined and no permission", s, err)
	}
	if err := db.AllowStoreCreation(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s, _ := db.JoinedStore(ctx); !s.MayCreate || s.ID != "" {
		t.Fatalf("after a restart: %+v; want the permission kept", s)
	}
	if err := db.JoinStore(ctx, "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := db.AllowStoreCreation(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := db.JoinedStore(ctx); s.MayCreate || s.ID != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("after joining: %+v; want the id and no permission to create", s)
	}
}
