package driver

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
)

// hosts starts hosts on one local-directory store; each gets a faultStore
// and, if set, tune.
func hosts(t *testing.T, ttl time.Duration, tune func(*Driver), names ...string) ([]*env, []*faultStore) {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	var es []*env
	var fs []*faultStore
	for _, n := range names {
		e := newHost(t, n, store)
		f := &faultStore{}
		e.ttl, e.tune = ttl, tune
		e.wrap = func(st transfer.ObjectStore) transfer.ObjectStore { f.ObjectStore = st; return f }
		e.start(nil)
		es, fs = append(es, e), append(fs, f)
	}
	return es, fs
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mountID(name, id string) map[string]string { return map[string]string{"Name": name, "ID": id} }

// publish mounts v on e, runs write in the mountpoint, unmounts and waits
// for the release.
func (e *env) publish(v, id string, write func(mp string)) {
	e.t.Helper()
	mp := e.ok("VolumeDriver.Mount", mountID(v, id))["Mountpoint"].(string)
	write(mp)
	e.ok("VolumeDriver.Unmount", mountID(v, id))
	e.released(v)
}

func (e *env) released(v string) {
	e.t.Helper()
	var last map[string]any
	defer func() {
		if e.t.Failed() && last != nil {
			e.t.Logf("%s's last status of %s: %v", e.host, v, last)
		}
	}()
	eventually(e.t, e.host+" to release "+v, func() bool {
		st := e.status(v)
		if st["lease"] == "released" && st["local"] == "ready" {
			return true
		}
		last = st
		return false
	})
}

func TestMountAnswersWhileRestoreRuns(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, func(d *Driver) { d.callTimeout = 2 * time.Second }, "hostA", "hostB")
	a, b := es[0], es[1]
	data := randomBytes(t, 3<<20)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0"}})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })

	g := fs[1].hold("get", "packs/")
	var msg string
	eventually(t, "a Mount that reports the restore's progress", func() bool {
		// The first answer may come before the snapshot was read.
		msg = b.fail("VolumeDriver.Mount", mountID("v", "b1"))
		if !strings.HasPrefix(msg, "restoring v: ") || !strings.HasSuffix(msg, "try again shortly") {
			t.Fatalf("Mount during a slow restore: %q", msg)
		}
		return strings.Contains(msg, "%")
	})
	if !strings.HasPrefix(msg, "restoring v: 0% (0 B of 3.0 MiB)") {
		t.Errorf("Mount during a slow restore: %q", msg)
	}
	if st := b.status("v"); !strings.HasPrefix(st["local"].(string), "restoring") || st["mounts"].(float64) != 0 || st["owner"] != "hostB" {
		t.Errorf("status while restoring: %v", st)
	}
	// B keeps the lease while it restores.
	if msg := a.fail("VolumeDriver.Mount", mountID("v", "a2")); !strings.Contains(msg, `held by host "hostB"`) {
		t.Errorf("A's Mount during B's restore: %q", msg)
	}
	g.release()
	eventually(t, "the restore to finish", func() bool { return b.status("v")["local"] == "ready" })
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b2"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); !bytes.Equal(got, data) {
		t.Error("restored data differs")
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b2"))
}

func TestRestoreNobodyMountsReleasesTheLease(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, func(d *Driver) { d.callTimeout, d.restoreIdle = 2*time.Second, 200*time.Millisecond }, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), randomBytes(t, 2<<20), 0o644) })
	g := fs[1].hold("get", "packs/")
	b.fail("VolumeDriver.Mount", mountID("v", "b1"))
	g.release()
	b.released("v")
	a.ok("VolumeDriver.Mount", mountID("v", "a2"))
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
}

func TestPullFetchesOnlyWhatChanged(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	ctx := context.Background()
	data := randomBytes(t, 4<<20)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })

	res, err := b.d.Pull(ctx, "v", nil)
	if err != nil || res.Fetched < 4<<20 {
		t.Fatalf("first pull: %+v, %v", res, err)
	}
	copy(data[1<<20:2<<20], randomBytes(t, 1<<20)) // one block of four changes
	a.publish("v", "a2", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), data, 0o644) })
	res, err = b.d.Pull(ctx, "v", nil)
	if err != nil || res.Fetched > 2<<20 || res.Reused < 2<<20 {
		t.Fatalf("second pull fetched %d bytes and reused %d (%v); want about one block fetched", res.Fetched, res.Reused, err)
	}
	if res, err = b.d.Pull(ctx, "v", nil); err != nil || !strings.Contains(res.Message, "already at snapshot") {
		t.Errorf("third pull: %+v, %v", res, err)
	}
	// The Mount after a pull fetches no data.
	before := fs[1].gotten.Load()
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if n := fs[1].gotten.Load() - before; n > 64<<10 {
		t.Errorf("Mount after a pull read %d bytes from the store", n)
	}
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); !bytes.Equal(got, data) {
		t.Error("pulled data differs")
	}
	if _, err := b.d.Pull(ctx, "v", nil); err == nil || !strings.Contains(err.Error(), "mounted on this host") {
		t.Errorf("pull while mounted: %v", err)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}

func TestRemountDuringReleaseKeepsTheLease(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, nil, "hostA")
	e := es[0]
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp := e.ok("VolumeDriver.Mount", mountID("v", "a"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "f"), []byte("one"), 0o644)
	gen := e.status("v")["generation"]

	g := fs[0].hold("put", "packs/") // the final snapshot hangs
	e.ok("VolumeDriver.Unmount", mountID("v", "a"))
	<-g.entered
	if st := e.status("v"); st["local"] != "releasing" || st["lease"] != "held" {
		t.Errorf("status during the final snapshot: %v", st)
	}
	// docker restart: the container is back before the upload ends.
	mp = e.ok("VolumeDriver.Mount", mountID("v", "b"))["Mountpoint"].(string)
	if st := e.status("v"); st["generation"] != gen || st["local"] != "mounted" {
		t.Errorf("remount took a new lease or lost state: %v (generation was %v)", st, gen)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "f")); string(b) != "one" {
		t.Errorf("data after remount: %q", b)
	}
	g.release()
	os.WriteFile(filepath.Join(mp, "f"), []byte("two"), 0o644)
	e.ok("VolumeDriver.Unmount", mountID("v", "b"))
	e.released("v")
	if st := e.status("v"); st["generation"] != gen || st["head_snapshot"] == "" {
		t.Errorf("after the release: %v", st)
	}
}

func TestCrashDuringReleaseIsFinishedAtStart(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "f"), []byte("before the crash"), 0o644)
	g := fs[0].hold("put", "packs/")
	a.ok("VolumeDriver.Unmount", mountID("v", "a"))
	<-g.entered
	a.stop() // the process dies with the final snapshot half done
	fs[0].gates = nil
	a.start(nil)
	a.released("v")
	mp = b.ok("VolumeDriver.Mount", mountID("v", "b"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "before the crash" {
		t.Errorf("B reads %q", got)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b"))
}

// While mounted, a volume is snapshotted and published every
// snapshot_interval; a host that dies loses only what came after the last.
func TestPeriodicSnapshots(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "1s"}})
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a1"))["Mountpoint"].(string)
	os.WriteFile(filepath.Join(mp, "f"), []byte("written while mounted"), 0o644)
	eventually(t, "a periodic snapshot", func() bool {
		st := a.status("v")
		return st["head_snapshot"] != "" && st["local"] == "mounted" && st["local_snapshot"] == st["head_snapshot"]
	})
	if !strings.Contains(a.status("v")["snapshot_note"].(string), "quiescent") {
		t.Error("status does not say periodic snapshots are not quiescent")
	}
	a.stop() // dies while mounted
	if _, err := b.d.Takeover(context.Background(), "v", false, nil); err != nil {
		t.Fatal(err)
	}
	mp = b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "written while mounted" {
		t.Errorf("B reads %q from the last periodic snapshot", got)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}
