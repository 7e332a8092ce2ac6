package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A host whose lease is taken while a container still writes: it stops
// publishing, moves its copy aside (the container keeps writing into it),
// says so, and its unmount publishes nothing.
func TestFencedWhileMounted(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 600*time.Millisecond, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("published"), 0o644) })
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a2"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "g"), []byte("unpublished"), 0o644)

	res, err := b.d.Takeover(context.Background(), "v", true, nil)
	if err != nil || res.From != "hostA" || !res.Forced || !strings.Contains(res.Message, "whatever hostA wrote after snapshot") {
		t.Fatalf("forced takeover: %+v, %v", res, err)
	}
	head := b.status("v")["head_snapshot"]
	eventually(t, "A to notice", func() bool { return a.status("v")["local"] == "diverged" })
	st := a.status("v")
	kept := st["kept_copies"].([]any)
	if len(kept) != 1 || !strings.Contains(st["last_error"].(string), "lost ownership") {
		t.Fatalf("A's status: %v", st)
	}
	// The container's writes land in the kept copy.
	os.WriteFile(filepath.Join(mp, "h"), []byte("still writing"), 0o644)
	if got, _ := os.ReadFile(filepath.Join(kept[0].(string), "h")); string(got) != "still writing" {
		t.Errorf("kept copy does not receive the container's writes: %q", got)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
	if got, _ := os.ReadFile(filepath.Join(kept[0].(string), "g")); string(got) != "unpublished" {
		t.Errorf("kept copy lost the unpublished write: %q", got)
	}
	time.Sleep(300 * time.Millisecond) // room for a (wrong) final snapshot
	if st := b.status("v"); st["head_snapshot"] != head {
		t.Errorf("the fenced host published: head %v, was %v", st["head_snapshot"], head)
	}
	mp = b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if _, err := os.Stat(filepath.Join(mp, "g")); err == nil {
		t.Error("B has A's unpublished file")
	}
	if msg := a.fail("VolumeDriver.Mount", mountID("v", "a3")); !strings.Contains(msg, `held by host "hostB"`) {
		t.Errorf("A's mount: %q", msg)
	}
	if msg := a.fail("VolumeDriver.Remove", map[string]string{"Name": "v"}); !strings.Contains(msg, `held by host "hostB"`) || !strings.Contains(msg, "cannot remove") {
		t.Errorf("remove while B holds: %q", msg)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")
	// The next Mount on A restores the head; the kept copy stays.
	mp = a.ok("VolumeDriver.Mount", mountID("v", "a4"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "published" {
		t.Errorf("A after the fence reads %q", got)
	}
	if _, err := os.Stat(kept[0].(string)); err != nil {
		t.Errorf("kept copy gone: %v", err)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a4"))
}

// -o takeover=auto: a Mount takes over a lease it has watched expire.
func TestAutoTakeover(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"takeover": "auto"}})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("published"), 0o644) })
	a.ok("VolumeDriver.Mount", mountID("v", "a2"))
	a.stop() // the host dies holding the lease

	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "published" {
		t.Errorf("B reads %q", got)
	}
	if st := b.status("v"); !strings.Contains(st["taken_over"].(string), "taken over from host hostA") {
		t.Errorf("status does not say what happened: %v", st)
	}
	a.start(nil)
	eventually(t, "A to find itself fenced", func() bool { return a.status("v")["local"] == "diverged" })
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}

// A host that died with a container running (its dockerd with it: no
// Unmount ever comes for that container's mount ID) and was taken over
// comes back fenced, and can take the volume again: a new Mount there
// restores the head and counts only itself, and its Unmount releases.
func TestFencedHostMountsAgain(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"takeover": "auto"}})
	a.ok("VolumeDriver.Mount", mountID("v", "a1")) // never unmounted
	a.stop()
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "f"), []byte("from B"), 0o644)
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")

	a.start(nil)
	eventually(t, "A to find itself fenced", func() bool { return a.status("v")["local"] == "diverged" })
	mp = a.ok("VolumeDriver.Mount", mountID("v", "a2"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "from B" {
		t.Errorf("A's new mount reads %q, want B's data", got)
	}
	if st := a.status("v"); st["mounts"].(float64) != 1 || st["owner"] != "hostA" || st["local"] != "mounted" {
		t.Errorf("A's status after its new mount: %v", st)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a1")) // the dead container's, if it ever comes: nothing to do
	if st := a.status("v"); st["mounts"].(float64) != 1 {
		t.Errorf("an Unmount of the dropped ID changed the count: %v", st)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
	a.released("v")
}

// With takeover=manual (the default) an expired lease is not taken: the
// Mount says the holder looks gone and what to run.
func TestManualTakeoverIsRequired(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 500*time.Millisecond, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.ok("VolumeDriver.Mount", mountID("v", "a1"))
	a.stop()
	msg := b.fail("VolumeDriver.Mount", mountID("v", "b1"))
	for _, want := range []string{`held by host "hostA"`, "looks gone", "portvol takeover v", "nothing hostA wrote is kept"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Mount of an expired lease: %q lacks %q", msg, want)
		}
	}
	if _, err := b.d.Takeover(context.Background(), "v", false, nil); err != nil {
		t.Fatal(err)
	}
	b.ok("VolumeDriver.Mount", mountID("v", "b2"))
	b.ok("VolumeDriver.Unmount", mountID("v", "b2"))
}
