package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A 4 GiB record in the store — head.json, volume.json or the store's
// config, sparse files so the test stays cheap — costs the command line
// and the plugin an error naming the object and its bound, not 4 GiB of
// memory (nor a "does not exist").
func TestHugeRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	url := "file://" + dir
	initStore(t, url)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	cli(t, "import", "--store", url, src, "v").ok(t)
	for _, c := range []struct {
		key, bound string
		args       []string // a command that reads the object
	}{
		{"volumes/v/head.json", "4096", []string{"verify", "v"}},
		{"volumes/v/volume.json", "65536", []string{"import", src, "v"}},
		{"config", "4096", []string{"snapshots", "v"}},
	} {
		t.Run(filepath.Base(c.key), func(t *testing.T) {
			p := filepath.Join(dir, filepath.FromSlash(c.key))
			saved, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.WriteFile(p, saved, 0o644); err != nil {
					t.Fatal(err)
				}
			}()
			if err := os.Truncate(p, 4<<30); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r := cli(t, append(c.args, "--store", url)...)
			runtime.ReadMemStats(&after)
			r.fails(t, exitError, c.key, "4294967296 bytes", c.bound)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("the command allocated %d MB over a 4 GiB %s", grew>>20, c.key)
			}
			if c.key == "config" {
				return // the plugin checks the config when it connects
			}
			// A plugin of its own: after a store error the plugin waits
			// 10 s before it reads the store again.
			h := newIdentityHost(t, dir)
			h.start()
			defer h.stop()
			_, body := h.until("VolumeDriver.Get", "v", c.key)
			if !strings.Contains(body, c.key) || !strings.Contains(body, c.bound) || !strings.Contains(body, "corrupt") || strings.Contains(body, "does not exist\"") {
				t.Errorf("plugin Get with a 4 GiB %s: %s; want an error naming the object and its bound, never \"does not exist\"", c.key, body)
			}
		})
	}
}

// A store written by a newer portvol (a newer format version in its
// config) is refused by every command that would write to it, naming both
// versions; nothing is written.
func TestNewerStoreRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	url := "file://" + dir
	initStore(t, url)
	config := `{"format":"portvol-snapshot-store","version":2,"store_id":"00112233445566778899aabbccddeeff","chunking":"fixed","block_size":1048576,"compression":"zstd","encryption":"none","dedup":"global"}`
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	want := []string{"format version 2", "this portvol knows format version 1", "upgrade portvol"}
	cli(t, "import", "--store", url, src, "v").fails(t, exitError, want...)
	cli(t, "init", "--store", url).fails(t, exitError, want...)
	if _, err := os.Stat(filepath.Join(dir, "volumes")); !os.IsNotExist(err) {
		t.Errorf("a refused import wrote to the newer store (%v)", err)
	}
	h := newIdentityHost(t, dir)
	h.start()
	code, body := h.until("VolumeDriver.Create", "v", "upgrade portvol")
	for _, w := range want {
		if code == 200 || !strings.Contains(body, w) {
			t.Errorf("plugin Create on a newer store: %d %s; want it refused, saying %q", code, body, w)
		}
	}
}
