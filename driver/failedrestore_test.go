package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/faultstore"
)

// A Mount whose restore fails (the store broke off mid-restore) and the
// Mount right after it on the same host: the second must still bring the
// host's older copy to the head, not mount the older copy as the newest
// (whose next publish would drop what the other host wrote and had
// acknowledged). Found by TestRandomDriver (seed 437543 with the
// remountDuringRelease scenario included: "lacks 7 acknowledged writes").
func TestMountAfterFailedRestoreRestores(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	a := newHost(t, "hostA", store)
	a.ttl = time.Second
	a.start(nil)
	b := newHost(t, "hostB", store)
	b.ttl = time.Second
	var faults *faultstore.Store
	b.wrap = func(st transfer.ObjectStore) transfer.ObjectStore { faults = faultstore.New(st, 1); return faults }
	b.start(nil)

	b.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	b.publish("v", "b1", func(mp string) { os.WriteFile(filepath.Join(mp, "old"), []byte("b"), 0o644) })
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "new"), []byte("acknowledged"), 0o644) })

	// B's restore of A's snapshot fails: its first read breaks off.
	faults.Inject(faultstore.OpGet, faultstore.Fail)
	if msg := b.fail("VolumeDriver.Mount", mountID("v", "b2")); !strings.Contains(msg, "injected fault") {
		t.Fatalf("B's first mount: %s", msg)
	}
	mp := b.ok("VolumeDriver.Mount", mountID("v", "b3"))["Mountpoint"].(string)
	if got, err := os.ReadFile(filepath.Join(mp, "new")); err != nil || string(got) != "acknowledged" {
		t.Errorf("B mounted a copy without A's published write: %q, %v", got, err)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b3"))
	b.released("v")
	mp = a.ok("VolumeDriver.Mount", mountID("v", "a2"))["Mountpoint"].(string)
	if got, err := os.ReadFile(filepath.Join(mp, "new")); err != nil || string(got) != "acknowledged" {
		t.Errorf("A's acknowledged write is gone from the head: %q, %v", got, err)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
}
