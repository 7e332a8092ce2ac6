package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/metadata"
)

// host is one `portvol serve` of a test, on its own socket and state
// directory, with the store at storeDir.
type identityHost struct {
	t                  *testing.T
	sock, state, store string
	s                  *server
	extra              []string
}

func newIdentityHost(t *testing.T, storeDir string, extra ...string) *identityHost {
	dir := t.TempDir()
	return &identityHost{t: t, sock: filepath.Join(dir, "pv.sock"), state: filepath.Join(dir, "state"), store: storeDir, extra: extra}
}

func (h *identityHost) start(extra ...string) {
	h.t.Helper()
	args := append([]string{"--socket", h.sock, "--state-dir", h.state, "--store", "file://" + h.store}, h.extra...)
	h.s = startServe(h.t, append(args, extra...)...)
	waitListening(h.t, h.sock, h.s)
}

func (h *identityHost) stop() {
	h.t.Helper()
	h.s.cancel()
	select {
	case <-h.s.code:
	case <-time.After(15 * time.Second):
		h.t.Fatal("serve did not stop")
	}
}

func (h *identityHost) call(method, name string) (int, string) {
	h.t.Helper()
	return post(h.t, h.sock, method, `{"Name":"`+name+`"}`)
}

// until calls method until its answer contains want (the plugin connects
// in the background), and returns the last answer.
func (h *identityHost) until(method, name, want string) (int, string) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := h.call(method, name)
		if strings.Contains(body, want) || time.Now().After(deadline) {
			return code, body
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// getStore is the Store field of a Get's status: "ok" or why not.
func getStore(t *testing.T, body string) string {
	t.Helper()
	var r struct {
		Volume struct{ Status map[string]any }
		Err    string
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Err != "" {
		t.Fatalf("Get answered %s (%v)", body, err)
	}
	s, _ := r.Volume.Status["store"].(string)
	return s
}

// records checks, after the host stopped, that it still knows name and
// kept its data directory.
func (h *identityHost) keeps(name string) {
	h.t.Helper()
	db, err := metadata.Open(filepath.Join(h.state, "portvol.db"), metadata.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Volume(context.Background(), name); err != nil {
		h.t.Errorf("the host forgot volume %s: %v", name, err)
	}
	if _, err := os.Stat(filepath.Join(h.state, "volumes", name, "data")); err != nil {
		h.t.Errorf("the host dropped the local copy of %s: %v", name, err)
	}
}

// A plugin creates its store on its very first start only; after that a
// missing store directory is an error that says what to do, is never
// created again, and the plugin keeps answering for its volumes.
func TestServeStoreMissing(t *testing.T) {
	store := filepath.Join(t.TempDir(), "nfs", "store")
	h := newIdentityHost(t, store)
	h.start()
	if code, body := h.call("VolumeDriver.Create", "v1"); code != 200 {
		t.Fatalf("Create on the first start (the plugin creates its store): %d %s", code, body)
	}
	h.stop()

	if err := os.Rename(store, store+".away"); err != nil {
		t.Fatal(err)
	}
	h.start()
	code, body := h.until("VolumeDriver.Create", "v2", "portvol init")
	if code == 200 || !strings.Contains(body, "directory "+store+" does not exist") || !strings.Contains(body, "portvol init --store") {
		t.Errorf("Create with the store missing: %d %s; want an error naming the directory and portvol init", code, body)
	}
	if code, body := h.call("VolumeDriver.Get", "v1"); code != 200 || !strings.Contains(getStore(t, body), "does not exist") {
		t.Errorf("Get of a known volume with the store missing: %d %s; want it answered from this host's records", code, body)
	}
	if code, body := h.call("VolumeDriver.Get", "v9"); code == 200 || strings.Contains(body, "does not exist\"") {
		t.Errorf("Get of an unknown name with the store missing: %d %s; want unavailable, not missing", code, body)
	}
	h.stop()
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin created the missing store directory again: %v", err)
	}
	h.keeps("v1")
}

// A store directory that vanishes under a running plugin (an NFS share
// unmounted) is "unavailable", never "no volumes": Get keeps answering
// from this host's records, nothing local is dropped, nothing is created
// in the store's place, and all is well once it is back.
func TestServeStoreVanishes(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	h := newIdentityHost(t, store)
	h.start()
	if code, body := h.call("VolumeDriver.Create", "v1"); code != 200 {
		t.Fatalf("Create: %d %s", code, body)
	}
	if err := os.Rename(store, store+".away"); err != nil {
		t.Fatal(err)
	}
	// Past the plugin's 3 s cache of what the store said.
	_, body := h.until("VolumeDriver.Get", "v1", "missing or empty")
	if !strings.Contains(getStore(t, body), "missing or empty") {
		t.Fatalf("Get after the store vanished: %s; want the volume, with the store reported missing", body)
	}
	for range 3 {
		if code, body := h.call("VolumeDriver.Get", "v1"); code != 200 || strings.Contains(body, "does not exist\"") {
			t.Fatalf("Get after the store vanished: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, body := h.call("VolumeDriver.Create", "v2"); code == 200 {
		t.Errorf("Create with the store gone succeeded: %s", body)
	}
	h.stop()
	if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something recreated the vanished store directory: %v", err)
	}
	h.keeps("v1")

	if err := os.Rename(store+".away", store); err != nil {
		t.Fatal(err)
	}
	h.start()
	if _, body := h.until("VolumeDriver.Get", "v1", `"store":"ok"`); getStore(t, body) != "ok" {
		t.Errorf("Get once the store is back: %s", body)
	}
}

// Another store at the same address — under a running plugin or at a
// restart — is refused, naming both store ids and what to do; the host
// keeps its records until it is told to move (--join-store).
func TestServeDifferentStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	h := newIdentityHost(t, store)
	h.start()
	if code, body := h.call("VolumeDriver.Create", "v1"); code != 200 {
		t.Fatalf("Create: %d %s", code, body)
	}
	old := decode[initResult](t, cli(t, "init", "--store", "file://"+store, "--json").ok(t)).StoreID

	// Replaced under the running plugin.
	if err := os.Rename(store, store+".a"); err != nil {
		t.Fatal(err)
	}
	other := decode[initResult](t, cli(t, "init", "--store", "file://"+store, "--json").ok(t))
	if !other.Created || other.StoreID == old {
		t.Fatalf("init of a new store at the same path: %+v", other)
	}
	_, body := h.until("VolumeDriver.Get", "v1", "is now store")
	if s := getStore(t, body); !strings.Contains(s, "is now store "+other.StoreID+", not store "+old) {
		t.Fatalf("Get with another store at the address: %s", body)
	}
	h.stop()
	h.keeps("v1")

	// At a restart.
	h.start()
	code, body := h.until("VolumeDriver.Create", "v2", "but this host joined")
	for _, want := range []string{"is store " + other.StoreID, "this host joined store " + old, "--join-store " + other.StoreID} {
		if code == 200 || !strings.Contains(body, want) {
			t.Errorf("Create after a restart on another store: %d %s; want it refused, saying %q", code, body, want)
		}
	}
	if code, body := h.call("VolumeDriver.Get", "v1"); code != 200 {
		t.Errorf("Get of a known volume: %d %s", code, body)
	}
	h.stop()
	h.keeps("v1")

	// Told to move: it joins the new store.
	h.start("--join-store", other.StoreID)
	if code, body := h.until("VolumeDriver.Create", "v2", ""); code != 200 {
		t.Errorf("Create after --join-store: %d %s", code, body)
	}
	h.stop()
	db, err := metadata.Open(filepath.Join(h.state, "portvol.db"), metadata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s, _ := db.JoinedStore(context.Background()); s.ID != other.StoreID {
		t.Errorf("the host remembers store %q after --join-store %s", s.ID, other.StoreID)
	}
}
