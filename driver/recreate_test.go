package driver

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A Mount that looked at the store just before another host removed the
// volume and a third created the name again must not take its copy of the
// removed volume for the new one: the new volume starts empty, and the
// old copy never reaches the store as the new volume's content. (Found by
// TestRandomDriver, seed 5 of its first runs: a Mount's incarnation check
// and its lease acquisition straddled the Remove and the Create.)
func TestMountRacingRemoveAndCreate(t *testing.T) {
	requireRoot(t)
	es, fs := hosts(t, time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "old"), []byte("removed volume"), 0o644) })

	// A's next Mount reads the store, then stops at its lease write.
	g := fs[0].hold("put", "volumes/v/head.json")
	type result struct {
		status int
		out    map[string]any
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, out, err := a.call(context.Background(), "VolumeDriver.Mount", mountID("v", "a2"))
		done <- result{st, out, err}
	}()
	<-g.entered
	b.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	b.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	g.release()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.out["Err"] == nil {
		mp := res.out["Mountpoint"].(string)
		if _, err := os.Stat(filepath.Join(mp, "old")); err == nil {
			t.Error("A mounted the new volume with the removed volume's data")
		}
		a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
		a.released("v")
	}
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if _, err := os.Stat(filepath.Join(mp, "old")); err == nil {
		t.Error("the new volume holds the removed volume's data")
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}
