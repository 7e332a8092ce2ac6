package main

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer/localdir"
)

// The round trip a user makes: import a directory, list, verify, export
// it elsewhere, change it, import again (the head moves, history stays),
// export onto the earlier copy.
func snapshotRoundTrip(t *testing.T, ts testStore, keyArgs ...string) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	want := treeOf(t, src)
	store := append([]string{"--store", ts.url}, keyArgs...)
	args := func(a ...string) []string { return append(append([]string{}, a...), store...) }
	cli(t, args("init")...).ok(t)

	first := decode[importResult](t, cli(t, args("import", src, "pg", "--json")...).ok(t))
	if first.Snapshot == "" || first.Parent != "" || first.Generation != 1 || !first.Created || first.Files != 5 || first.UploadedBytes == 0 {
		t.Fatalf("first import: %+v", first)
	}
	if o := head(t, ts.store, "pg"); o.Record.State != lease.Released || o.Record.Head != first.Snapshot {
		t.Fatalf("after import the head record is %+v, want released with head %s", o.Record, first.Snapshot)
	}
	if v, err := catalog.Get(context.Background(), ts.store, "pg"); err != nil || v.Options["snapshot_interval"] == "" {
		t.Fatalf("volume record %+v, %v", v, err)
	}

	// Change the tree and import again: a new head whose parent is the first.
	time.Sleep(150 * time.Millisecond) // past the racy window of the first import
	if err := os.WriteFile(filepath.Join(src, "base/1/1259"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "empty")); err != nil {
		t.Fatal(err)
	}
	changed := treeOf(t, src)
	second := decode[importResult](t, cli(t, args("import", src, "pg", "--json")...).ok(t))
	if second.Parent != first.Snapshot || second.Generation != 2 || second.Created {
		t.Fatalf("second import: %+v, want parent %s at generation 2", second, first.Snapshot)
	}
	if second.UploadedBytes >= first.UploadedBytes/2 {
		t.Errorf("second import uploaded %d bytes after a small change (first: %d)", second.UploadedBytes, first.UploadedBytes)
	}

	// snapshots: both, oldest first, the second marked as head.
	list := decode[[]snapshotJSON](t, cli(t, args("snapshots", "pg", "--json")...).ok(t))
	if len(list) != 2 || list[0].ID != first.Snapshot || list[1].ID != second.Snapshot || list[0].Head || !list[1].Head {
		t.Fatalf("snapshots --json: %+v", list)
	}
	if list[1].Host == "" || list[1].Files != 4 || list[1].Parent != first.Snapshot {
		t.Errorf("snapshot entry %+v", list[1])
	}
	table := cli(t, args("snapshots", "pg")...).ok(t).stdout
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "ID") || !strings.HasPrefix(lines[2], "*  "+second.Snapshot) || !strings.HasPrefix(lines[1], "   "+first.Snapshot) {
		t.Errorf("snapshots table:\n%s", table)
	}

	// verify: the head, one by ID, all.
	if out := cli(t, args("verify", "pg")...).ok(t).stdout; !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "chunks") {
		t.Errorf("verify printed %q", out)
	}
	cli(t, args("verify", "pg", "--snapshot", first.Snapshot)...).ok(t)
	all := decode[verifyResult](t, cli(t, args("verify", "pg", "--all", "--json")...).ok(t))
	if !all.OK || len(all.Snapshots) != 2 || all.Packs == 0 || all.Chunks == 0 {
		t.Errorf("verify --all: %+v", all)
	}

	// export the head into a new directory, the first one by ID.
	dst := filepath.Join(base, "restored", "pg")
	exp := decode[exportResult](t, cli(t, args("export", "pg", dst, "--json")...).ok(t))
	if exp.Snapshot != second.Snapshot || exp.Dir != dst {
		t.Errorf("export: %+v", exp)
	}
	sameTree(t, changed, treeOf(t, dst))
	old := filepath.Join(base, "old")
	sc := filepath.Join(base, "export.statcache")
	cli(t, args("export", "pg", old, "--snapshot", first.Snapshot, "--stat-cache", sc)...).ok(t)
	sameTree(t, want, treeOf(t, old))

	// Exporting the head onto the old copy needs --force, then fetches
	// only what changed.
	cli(t, args("export", "pg", old)...).fails(t, exitUsage, "is not empty", "--force")
	sameTree(t, want, treeOf(t, old))
	onto := decode[exportResult](t, cli(t, args("export", "pg", old, "--force", "--stat-cache", sc, "--json")...).ok(t))
	sameTree(t, changed, treeOf(t, old))
	if onto.ReusedBytes == 0 || onto.TransferredBytes >= exp.TransferredBytes/2 {
		t.Errorf("export onto the previous copy fetched %d bytes and reused %d (a cold export fetched %d)",
			onto.TransferredBytes, onto.ReusedBytes, exp.TransferredBytes)
	}
}

func TestSnapshotCommandsRoundTrip(t *testing.T) {
	t.Run("plain", func(t *testing.T) { snapshotRoundTrip(t, localStore(t)) })
	t.Run("encrypted", func(t *testing.T) {
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(i)
		}
		snapshotRoundTrip(t, localStore(t), "--encryption-key-file", keyFileWith(t, []byte(hex.EncodeToString(key)+"\n")))
	})
}

func TestS3SnapshotCommandsRoundTrip(t *testing.T) {
	ts, _ := s3Store(t)
	snapshotRoundTrip(t, ts, "--encryption-key-file", keyFileWith(t, []byte(strings.Repeat("k", 32))))
}

// importRefusedWhileHeld: a host holding the volume's lease (a plugin
// with the volume mounted) makes import fail, naming the holder, and
// leaves the head alone; once released, import works.
func importRefusedWhileHeld(t *testing.T, ts testStore) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	cli(t, "import", "--store", ts.url, src, "web").ok(t)
	before := head(t, ts.store, "web").Record

	m, err := lease.New(ts.store, lease.Options{Host: "plugin-host"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Acquire(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	r := cli(t, "import", "--store", ts.url, src, "web")
	r.fails(t, exitHeld, "import refused", `held by host "plugin-host"`, "portvol takeover web")
	if o := head(t, ts.store, "web"); o.Record.Owner != "plugin-host" || o.Record.Head != before.Head {
		t.Errorf("refused import changed the head record: %+v", o.Record)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli(t, "import", "--store", ts.url, src, "web").ok(t)
	if o := head(t, ts.store, "web"); o.Record.Head == before.Head || o.Record.Generation != before.Generation+2 {
		t.Errorf("import after the release: %+v (before %+v)", o.Record, before)
	}
}

func TestImportRefusedWhileHeld(t *testing.T)   { importRefusedWhileHeld(t, localStore(t)) }
func TestS3ImportRefusedWhileHeld(t *testing.T) { ts, _ := s3Store(t); importRefusedWhileHeld(t, ts) }

// verifyTamperedPack flips one byte of a pack through the store: verify
// exits 1 and names the pack; export refuses too.
func verifyTamperedPack(t *testing.T, ts testStore) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	cli(t, "import", "--store", ts.url, src, "db").ok(t)
	cli(t, "verify", "--store", ts.url, "db").ok(t)
	packs := storeKeys(t, ts.store, "packs/")
	if len(packs) == 0 {
		t.Fatal("no packs in the store")
	}
	flipByte(t, ts.store, packs[0])
	r := cli(t, "verify", "--store", ts.url, "db")
	r.fails(t, exitError, packs[0], "DAMAGED", `volume "db": 1 of 1 snapshots are damaged`)
	if strings.Contains(r.stdout, "ok:") {
		t.Errorf("verify of a damaged snapshot printed %q", r.stdout)
	}
	j := cli(t, "verify", "--store", ts.url, "db", "--json")
	res := decode[verifyResult](t, j)
	if j.code != exitError || res.OK || len(res.Snapshots) != 1 || !strings.Contains(strings.Join(res.Snapshots[0].Problems, "\n"), packs[0]) {
		t.Errorf("verify --json of a damaged snapshot: exit %d, %+v", j.code, res)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	cli(t, "export", "--store", ts.url, "db", dst).fails(t, exitError, "corrupt")
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a failed export left %s behind (%v)", dst, err)
	}
}

func TestVerifyTamperedPack(t *testing.T)   { verifyTamperedPack(t, localStore(t)) }
func TestS3VerifyTamperedPack(t *testing.T) { ts, _ := s3Store(t); verifyTamperedPack(t, ts) }

// keyErrors: a store encrypted with one key refuses no key, another key,
// and malformed key files, with messages that say what to do and never
// show key material.
func keyErrors(t *testing.T, ts testStore) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	key := []byte(strings.Repeat("0123456789abcdef", 4)) // 64 hex digits
	other := []byte(strings.Repeat("fedcba9876543210", 4))
	good, wrong := keyFileWith(t, key), keyFileWith(t, other)
	initStore(t, ts.url, "--encryption-key-file", good)
	cli(t, "init", "--store", ts.url, "--encryption-key-file", wrong).fails(t, exitKey, "is not this store's encryption key")
	cli(t, "init", "--store", ts.url).fails(t, exitKey, "is encrypted")
	cli(t, "import", "--store", ts.url, "--encryption-key-file", good, src, "k").ok(t)

	for name, c := range map[string]struct {
		args []string
		want []string
	}{
		"missing key":      {nil, []string{"is encrypted", "--encryption-key-file"}},
		"wrong key":        {[]string{"--encryption-key-file", wrong}, []string{"is not this store's encryption key", wrong}},
		"short key file":   {[]string{"--encryption-key-file", keyFileWith(t, []byte("tooshort"))}, []string{"must be 32 bytes"}},
		"absent key file":  {[]string{"--encryption-key-file", "/nonexistent/key"}, []string{"encryption key file /nonexistent/key does not exist", "head -c 32 /dev/urandom"}},
		"import wrong key": {[]string{"--encryption-key-file", wrong}, []string{"is not this store's encryption key"}},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := []string{"snapshots", "--store", ts.url, "k"}
			if strings.HasPrefix(name, "import") {
				cmd = []string{"import", "--store", ts.url, src, "k"}
			}
			r := cli(t, append(cmd, c.args...)...)
			r.fails(t, exitKey, c.want...)
			for _, secret := range [][]byte{key, other, key[:16], other[:16]} {
				if strings.Contains(r.stderr+r.stdout, string(secret)) {
					t.Errorf("output shows key material:\n%s", r.stderr)
				}
			}
		})
	}
	// The volume is untouched by the refused import: one snapshot.
	list := decode[[]snapshotJSON](t, cli(t, "snapshots", "--store", ts.url, "--encryption-key-file", good, "k", "--json").ok(t))
	if len(list) != 1 {
		t.Errorf("%d snapshots after refused imports, want 1", len(list))
	}

	// A key given for an unencrypted store.
	plain := t.TempDir() + "/plainstore"
	initStore(t, "file://"+plain)
	cli(t, "init", "--store", "file://"+plain, "--encryption-key-file", good).fails(t, exitKey, "not encrypted")
	cli(t, "import", "--store", "file://"+plain, src, "p").ok(t)
	cli(t, "snapshots", "--store", "file://"+plain, "--encryption-key-file", good, "p").
		fails(t, exitKey, "not encrypted", "drop --encryption-key-file")
}

func TestKeyErrors(t *testing.T)   { keyErrors(t, localStore(t)) }
func TestS3KeyErrors(t *testing.T) { ts, _ := s3Store(t); keyErrors(t, ts) }

func TestImportVolumeOptions(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	cli(t, "import", "--store", ts.url, src, "v", "-o", "snapshot_interval=1m", "-o", "takeover=auto").ok(t)
	v, err := catalog.Get(context.Background(), ts.store, "v")
	if err != nil || v.Options["snapshot_interval"] != "1m0s" || v.Options["takeover"] != "auto" || !strings.HasSuffix(v.CreatedBy, "-cli") {
		t.Fatalf("volume record %+v, %v", v, err)
	}
	// Same options (spelled differently): fine. No options: fine.
	cli(t, "import", "--store", ts.url, src, "v", "-o", "snapshot_interval=60s", "-o", "takeover=auto").ok(t)
	cli(t, "import", "--store", ts.url, src, "v").ok(t)
	// Different options: refused, nothing published.
	n := len(storeKeys(t, ts.store, "snapshots/v/"))
	cli(t, "import", "--store", ts.url, src, "v", "-o", "snapshot_interval=5m").
		fails(t, exitError, `volume "v" already exists with options`, "snapshot_interval=1m0s", "import without -o")
	if got := len(storeKeys(t, ts.store, "snapshots/v/")); got != n {
		t.Errorf("refused import added snapshots: %d, was %d", got, n)
	}
}

func TestSnapshotsOfMissingVolume(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	// A directory that was never made a store with portvol init.
	cli(t, "snapshots", "--store", ts.url, "nope").fails(t, exitNoStore, "has no portvol configuration", "portvol init --store")
	initStore(t, ts.url)
	cli(t, "snapshots", "--store", ts.url, "nope").fails(t, exitError, `volume "nope" does not exist in store `+ts.url)
	cli(t, "import", "--store", ts.url, src, "yes").ok(t)
	for _, args := range [][]string{
		{"snapshots", "nope"},
		{"verify", "nope"},
		{"verify", "nope", "--all"},
		{"export", "nope", filepath.Join(t.TempDir(), "x")},
	} {
		cli(t, append(args, "--store", ts.url)...).fails(t, exitError, `volume "nope" does not exist in store `+ts.url)
	}
	cli(t, "export", "--store", ts.url, "yes", filepath.Join(t.TempDir(), "x"), "--snapshot", "20200101T000000Z-0123456789abcdef").
		fails(t, exitError, "has no snapshot 20200101T000000Z-0123456789abcdef", "portvol snapshots")
	cli(t, "verify", "--store", ts.url, "yes", "--snapshot", "20200101T000000Z-0123456789abcdef").
		fails(t, exitError, "has no snapshot 20200101T000000Z-0123456789abcdef")
}

// The store and key come from the environment twins of the flags.
func TestSnapshotCommandsEnvironment(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	t.Setenv("PORTVOL_STORE", ts.url)
	t.Setenv("PORTVOL_ENCRYPTION_KEY_FILE", keyFileWith(t, []byte(strings.Repeat("z", 32))))
	cli(t, "init").ok(t)
	cli(t, "import", src, "e").ok(t)
	if out := cli(t, "snapshots", "e").ok(t).stdout; !strings.Contains(out, "* head") {
		t.Errorf("snapshots via the environment:\n%s", out)
	}
	t.Setenv("PORTVOL_ENCRYPTION_KEY_FILE", "")
	cli(t, "snapshots", "e").fails(t, exitKey, "is encrypted")
}

// No command but init creates a store: a mistyped path — also for import,
// which writes — or an empty directory (a file system that is not
// mounted) fails, says what to do, and leaves nothing behind.
func TestCommandsDoNotCreateStores(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	missing := filepath.Join(t.TempDir(), "typo")
	empty := t.TempDir()
	for _, args := range [][]string{
		{"import", src, "v"}, {"snapshots", "v"}, {"verify", "v"}, {"export", "v", filepath.Join(t.TempDir(), "d")},
	} {
		cli(t, append(args, "--store", "file://"+missing)...).fails(t, exitNoStore, "directory "+missing+" does not exist", "portvol init --store")
		cli(t, append(args, "--store", "file://"+empty)...).fails(t, exitNoStore, "holds no portvol store", "portvol init --store")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a command created %s (%v)", missing, err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a command wrote %d entries into an empty directory", len(entries))
	}
}

func TestS3CommandsDoNotCreateBuckets(t *testing.T) {
	ts, srv := s3Store(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	other := strings.Replace(ts.url, "s3://"+srv.Bucket+"/", "s3://nosuch-bucket/", 1)
	cli(t, "snapshots", "--store", other, "v").fails(t, exitNoStore, `bucket "nosuch-bucket" does not exist`, "portvol init --store")
	cli(t, "import", "--store", other, src, "v").fails(t, exitNoStore, `bucket "nosuch-bucket" does not exist`, "portvol init --store")
	if _, err := os.Stat(filepath.Join(srv.DataDir(), "nosuch-bucket")); !os.IsNotExist(err) {
		t.Errorf("a command created the bucket (%v)", err)
	}
	// An existing bucket with nothing under the prefix is no store either.
	cli(t, "import", "--store", ts.url, src, "v").fails(t, exitNoStore, "has no portvol configuration", "portvol init --store")
	if keys := storeKeys(t, ts.store, ""); len(keys) != 0 {
		t.Errorf("a refused import wrote %v", keys)
	}
	initStore(t, ts.url)
	cli(t, "import", "--store", ts.url, src, "v").ok(t)
}

// init makes the store, with its block size; running it again with the
// same settings does nothing, with others is refused.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "store")
	url := "file://" + dir
	res := decode[initResult](t, cli(t, "init", "--store", url, "--block-size", "256KiB", "--json").ok(t))
	if !res.Created || res.BlockSize != 256<<10 || res.Encrypted || len(res.StoreID) != 32 || res.Store != url {
		t.Fatalf("init: %+v", res)
	}
	again := decode[initResult](t, cli(t, "init", "--store", url, "--json").ok(t))
	if again.Created || again.StoreID != res.StoreID {
		t.Fatalf("init of an existing store: %+v, want the same store, not created", again)
	}
	if out := cli(t, "init", "--store", url, "--block-size", "256KiB").ok(t).stdout; !strings.Contains(out, "exists already") || !strings.Contains(out, res.StoreID) {
		t.Errorf("init again printed %q", out)
	}
	cli(t, "init", "--store", url, "--block-size", "1MiB").fails(t, exitUsage, "exists with blocks of 256 KiB", "drop --block-size")
	st, err := localdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := snapshot.Open(context.Background(), st, snapshot.Options{}); err != nil || r.BlockSize() != 256<<10 || r.StoreID() != res.StoreID {
		t.Fatalf("the store init made: %v, %v", r, err)
	}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	cli(t, "import", "--store", url, "--block-size", "1MiB", src, "v").fails(t, exitUsage, "unknown flag: --block-size")
	cli(t, "import", "--store", url, src, "v").ok(t)
}

// A removed volume (tombstone head record, record gone) is not silently
// re-created by import: that is the plugin's, with its trash.
func TestImportRemovedVolume(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	cli(t, "import", "--store", ts.url, src, "gone").ok(t)
	m, err := lease.New(ts.store, lease.Options{Host: "remover"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := ts.store.Delete(context.Background(), catalog.Key("gone")); err != nil {
		t.Fatal(err)
	}
	cli(t, "import", "--store", ts.url, src, "gone").fails(t, exitError, `volume "gone" was removed`, `by host "remover"`, "docker volume create")
	if _, err := catalog.Get(context.Background(), ts.store, "gone"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("the refused import re-created the volume record (%v)", err)
	}
	cli(t, "export", "--store", ts.url, "gone", filepath.Join(t.TempDir(), "d")).fails(t, exitError, `volume "gone" was removed`)
}
