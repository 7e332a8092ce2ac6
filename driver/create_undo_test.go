package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Create that fails on this host (here: its local copy cannot be made)
// leaves no volume in the store: other hosts neither Get nor List it.
// Once the cause is gone, the same Create succeeds.
func TestFailedLocalCreateLeavesNothingInTheStore(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, 30*time.Second, nil, "hostA", "hostB")
	a, b := es[0], es[1]
	blocker := filepath.Join(a.stateDir, "volumes", "v")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := a.fail("VolumeDriver.Create", map[string]any{"Name": "v"})
	if !strings.Contains(msg, "nothing was created") {
		t.Errorf("failed Create says %q; want it to say nothing was created", msg)
	}
	if msg := b.fail("VolumeDriver.Get", map[string]string{"Name": "v"}); !strings.Contains(msg, "does not exist") {
		t.Errorf("B's Get after A's failed Create: %q", msg)
	}
	for _, e := range []*env{a, b} {
		if vols := e.ok("VolumeDriver.List", map[string]any{})["Volumes"].([]any); len(vols) != 0 {
			t.Errorf("%s lists %v after a failed Create", e.host, vols)
		}
	}

	os.Remove(blocker)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	b.ok("VolumeDriver.Get", map[string]string{"Name": "v"})
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if entries, _ := os.ReadDir(mp); len(entries) != 0 {
		t.Errorf("the volume created after the failure is not empty: %v", entries)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
}
