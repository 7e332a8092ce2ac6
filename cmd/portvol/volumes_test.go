package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
)

// portvol volumes lists a store's volumes with who holds them, their
// head, size and trash, straight from the store.
func TestVolumes(t *testing.T) {
	ctx := context.Background()
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	cli(t, "init", "--store", ts.url).ok(t)
	for _, v := range []string{"alpha", "beta", "gone"} {
		cli(t, "import", "--store", ts.url, "--host-id", "db1-cli", src, v, "-o", "snapshot_interval=1m").ok(t)
	}
	// beta is mounted on another host; gone was removed (its record moved
	// to the trash, its head record kept as a tombstone).
	m, err := lease.New(ts.store, lease.Options{Host: "hostB"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if err := catalog.MoveToTrash(ctx, ts.store, "gone", catalog.TrashID(time.Now()), []string{catalog.Key("gone")}, nil); err != nil {
		t.Fatal(err)
	}

	list := decode[[]volumeJSON](t, cli(t, "volumes", "--store", ts.url, "--json").ok(t))
	if len(list) != 3 {
		t.Fatalf("%d volumes listed, want alpha, beta and gone: %+v", len(list), list)
	}
	byName := map[string]volumeJSON{}
	for _, v := range list {
		byName[v.Name] = v
	}
	a, b, g := byName["alpha"], byName["beta"], byName["gone"]
	if a.Owner != "db1-cli" || a.Lease != "released" || a.Generation != 1 || a.Head == "" || a.SizeBytes == nil ||
		*a.SizeBytes == 0 || a.HeadAgeSeconds == nil || *a.HeadAgeSeconds < 0 || *a.HeadAgeSeconds > 60 ||
		a.Options["snapshot_interval"] != "1m0s" || a.TrashEntries != 0 || a.Error != "" {
		t.Errorf("alpha: %+v", a)
	}
	if b.Owner != "hostB" || b.Lease != "held" || b.Generation != 2 || b.Head == "" {
		t.Errorf("beta, held by hostB: %+v", b)
	}
	if g.TrashEntries != 1 || g.Options != nil {
		t.Errorf("gone, in the trash: %+v", g)
	}

	out := cli(t, "volumes", "--store", ts.url).ok(t).stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "VOLUME") || !strings.Contains(lines[2], "hostB") || !strings.Contains(lines[2], "held") {
		t.Errorf("table:\n%s", out)
	}
}

// Without the key of an encrypted store, volumes still lists who holds
// what and says why sizes are missing.
func TestVolumesEncryptedWithoutKey(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	key := keyFileWith(t, []byte(strings.Repeat("0123456789abcdef", 4)))
	cli(t, "init", "--store", ts.url, "--encryption-key-file", key).ok(t)
	cli(t, "import", "--store", ts.url, "--encryption-key-file", key, src, "sec").ok(t)
	r := cli(t, "volumes", "--store", ts.url, "--json")
	list := decode[[]volumeJSON](t, r.ok(t))
	if len(list) != 1 || list[0].SizeBytes != nil || list[0].Lease != "released" || list[0].HeadAgeSeconds == nil {
		t.Errorf("without the key: %+v", list)
	}
	if !strings.Contains(r.stderr, "sizes need its key (--encryption-key-file)") {
		t.Errorf("stderr does not say why sizes are missing: %q", r.stderr)
	}
	with := decode[[]volumeJSON](t, cli(t, "volumes", "--store", ts.url, "--json", "--encryption-key-file", key).ok(t))
	if len(with) != 1 || with[0].SizeBytes == nil || *with[0].SizeBytes == 0 {
		t.Errorf("with the key: %+v", with)
	}
	cli(t, "volumes", "--store", ts.url, "--encryption-key-file", keyFileWith(t, []byte(strings.Repeat("fedcba9876543210", 4)))).
		fails(t, exitKey, "is not this store's encryption key")
}

// Shell completion offers the store's volume names for VOLUME arguments,
// and cobra's completion scripts exist for bash and zsh.
func TestCompletion(t *testing.T) {
	ts := localStore(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	cli(t, "init", "--store", ts.url).ok(t)
	for _, v := range []string{"pg-main", "pg-test", "web"} {
		cli(t, "import", "--store", ts.url, src, v).ok(t)
	}
	code, out, errOut := runCLI("__complete", "snapshots", "--store", ts.url, "pg")
	if code != 0 || !strings.Contains(out, "pg-main\npg-test\n") || strings.Contains(out, "web") {
		t.Errorf("completing snapshots pg: exit %d\n%s%s", code, out, errOut)
	}
	t.Setenv("PORTVOL_STORE", ts.url)
	if _, out, _ = runCLI("__complete", "import", src, "w"); !strings.Contains(out, "web\n") {
		t.Errorf("completing import's VOLUME from PORTVOL_STORE:\n%s", out)
	}
	for _, shell := range []string{"bash", "zsh"} {
		if code, out, _ := runCLI("completion", shell); code != 0 || !strings.Contains(out, "portvol") || len(out) < 1000 {
			t.Errorf("portvol completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
}
