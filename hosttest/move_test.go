package hosttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
)

func TestTwoHostsLocaldir(t *testing.T) {
	requireRoot(t)
	testTwoHosts(t, "file://"+filepath.Join(t.TempDir(), "store"), nil)
}

func TestTwoHostsS3(t *testing.T) {
	requireRoot(t)
	srv := s3test.Start(t)
	testTwoHosts(t, srv.URL(srv.Prefix(t)), srv.Env())
}

// testTwoHosts is the scenario: a volume follows its container
// from host A to host B and back; a host that dies while holding it is
// taken over after its lease expires, losing only what it never
// published; when it comes back it finds itself fenced, keeps its copy
// aside, and nothing it does reaches the store.
func testTwoHosts(t *testing.T, store string, env []string) {
	a := newHost(t, "hostA", store, env)
	b := newHost(t, "hostB", store, env)
	vol := map[string]string{"Name": "db"}
	mnt := func(id string) map[string]string { return map[string]string{"Name": "db", "ID": id} }

	// Created on A, visible on B (docker volume create on B would find it).
	a.ok("VolumeDriver.Create", map[string]any{"Name": "db", "Opts": map[string]string{"snapshot_interval": "0"}})
	if st := b.status("db"); st["created_by"] != "hostA" || st["local"] != "absent" {
		t.Errorf("B sees %v", st)
	}
	if vols := b.ok("VolumeDriver.List", map[string]any{})["Volumes"].([]any); len(vols) != 1 || vols[0].(map[string]any)["Name"] != "db" {
		t.Errorf("B lists %v", vols)
	}
	// The same create on B is a no-op; other options are refused.
	b.ok("VolumeDriver.Create", map[string]any{"Name": "db", "Opts": map[string]string{"snapshot_interval": "0s"}})
	msg := b.fail("VolumeDriver.Create", map[string]any{"Name": "db", "Opts": map[string]string{"takeover": "auto"}})
	contains(t, "create with other options", msg, "already exists with other options", "takeover")

	// A runs the database; B's Mount is refused, naming the holder.
	mpA := a.mount("db", "a1")
	writeFile(t, filepath.Join(mpA, "f"), "from A")
	msg = b.fail("VolumeDriver.Mount", mnt("b1"))
	contains(t, "B's mount while A holds", msg, `held by host "hostA"`, "portvol takeover db")

	// A stops: its Unmount publishes and releases; B's Mount gets A's bytes.
	a.ok("VolumeDriver.Unmount", mnt("a1"))
	eventually(t, "A to release", func() bool { return a.status("db")["lease"] == "released" })
	mpB := b.mount("db", "b1")
	if got := readFile(t, filepath.Join(mpB, "f")); got != "from A" {
		t.Fatalf("B reads %q, want A's bytes", got)
	}
	msg = a.fail("VolumeDriver.Mount", mnt("a2"))
	contains(t, "A's mount while B holds", msg, `held by host "hostB"`)

	// B publishes once, then writes more and dies without publishing it.
	writeFile(t, filepath.Join(mpB, "g"), "published by B")
	b.ok("VolumeDriver.Unmount", mnt("b1"))
	eventually(t, "B to release", func() bool { return b.status("db")["lease"] == "released" })
	mpB = b.mount("db", "b2")
	writeFile(t, filepath.Join(mpB, "h"), "never published")
	published := b.status("db")["head_snapshot"].(string)

	// A takeover while B is alive is refused after watching a full TTL.
	_, errOut, code := a.cli("takeover", "db")
	if code == 0 {
		t.Fatal("takeover of a live lease succeeded")
	}
	contains(t, "takeover of a live lease", errOut, "refusing to take over a live lease", "hostB")

	b.kill()
	out, errOut, code := a.cli("takeover", "db")
	if code != 0 {
		t.Fatalf("takeover after B died: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "takeover message", out, "hostB", "whatever hostB wrote after snapshot "+published+" is gone")
	mpA = a.mount("db", "a3")
	if f, g, h := readFile(t, filepath.Join(mpA, "f")), readFile(t, filepath.Join(mpA, "g")), filepath.Join(mpA, "h"); f != "from A" || g != "published by B" {
		t.Errorf("A restored f=%q g=%q, want the last published snapshot", f, g)
	} else if _, err := os.Stat(h); err == nil {
		t.Errorf("A has B's unpublished file")
	}
	before := a.cliStatus("db")
	if before["owner"] != "hostA" || before["lease"] != "held" || before["head_snapshot"] != published {
		t.Errorf("status after takeover: %v", before)
	}
	contains(t, "status after takeover", before["taken_over"].(string), "hostB")

	// B comes back: fenced, its copy kept aside, nothing reaches the store.
	b.start()
	eventually(t, "B to find itself fenced", func() bool { return b.status("db")["local"] == "diverged" })
	st := b.status("db")
	contains(t, "B's last error", st["last_error"].(string), "lost ownership", "kept at")
	kept := st["kept_copies"].([]any)
	if len(kept) != 1 || readFile(t, filepath.Join(kept[0].(string), "h")) != "never published" {
		t.Errorf("B's kept copies %v do not hold its unpublished write", kept)
	}
	b.ok("VolumeDriver.Unmount", mnt("b2")) // its container stops
	msg = b.fail("VolumeDriver.Mount", mnt("b3"))
	contains(t, "fenced B's mount", msg, `held by host "hostA"`)
	after := a.cliStatus("db")
	for _, k := range []string{"owner", "generation", "head_snapshot", "lease"} {
		if after[k] != before[k] {
			t.Errorf("the fenced host changed the store's %s: %v → %v", k, before[k], after[k])
		}
	}

	// B pre-stages the volume while A holds it, then follows it.
	out, errOut, code = b.cli("pull", "db")
	if code != 0 {
		t.Fatalf("pull: exit %d\n%s%s", code, out, errOut)
	}
	if st := b.status("db"); st["local"] != "ready" || st["local_snapshot"] != published {
		t.Errorf("after pull B's copy is %v at %v, want ready at %s", st["local"], st["local_snapshot"], published)
	}
	writeFile(t, filepath.Join(mpA, "i"), "A again")
	a.ok("VolumeDriver.Unmount", mnt("a3"))
	eventually(t, "A to release", func() bool { return a.status("db")["lease"] == "released" })
	mpB = b.mount("db", "b4")
	if got := readFile(t, filepath.Join(mpB, "i")); got != "A again" {
		t.Errorf("B reads %q after the move", got)
	}
	if _, err := os.Stat(filepath.Join(mpB, "h")); err == nil {
		t.Error("B's fenced write came back")
	}
	b.ok("VolumeDriver.Unmount", mnt("b4"))

	// Remove on B: gone everywhere, back with undelete on A.
	eventually(t, "B to release", func() bool { return b.status("db")["lease"] == "released" })
	b.ok("VolumeDriver.Remove", vol)
	eventually(t, "A to see the removal", func() bool {
		_, out, _ := a.call("VolumeDriver.Get", vol)
		s, _ := out["Err"].(string)
		return strings.Contains(s, "does not exist")
	})
	if out, errOut, code := a.cli("undelete", "db"); code != 0 {
		t.Fatalf("undelete: exit %d\n%s%s", code, out, errOut)
	}
	mpA = a.mount("db", "a4")
	if got := readFile(t, filepath.Join(mpA, "i")); got != "A again" {
		t.Errorf("undeleted volume reads %q", got)
	}
	a.ok("VolumeDriver.Unmount", mnt("a4"))
}
