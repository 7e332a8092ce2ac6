package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer/localdir"
)

// TestPeriodicSnapshotsRetainAndSkipUnchanged: intervals with no change
// publish nothing (the head stays, and its confirmation is shown); each
// change publishes one snapshot, and the volume's keep_last keeps the store
// to that many (one generation, so no other host's base is kept).
func TestPeriodicSnapshotsRetainAndSkipUnchanged(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA")
	a := es[0]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "1s", "keep_last": "2"}})
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a1"))["Mountpoint"].(string)
	heads := map[string]bool{}
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(mp, "f"), []byte(fmt.Sprintf("version %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("snapshot of version %d", i), func() bool {
			h, _ := a.status("v")["head_snapshot"].(string)
			if h == "" || heads[h] {
				return false
			}
			heads[h] = true
			return true
		})
	}
	head := a.status("v")["head_snapshot"]
	eventually(t, "a confirmation without a new snapshot", func() bool {
		st := a.status("v")
		c, _ := st["confirmed_age"].(string)
		return c != "" && st["head_snapshot"] == head
	})
	time.Sleep(2500 * time.Millisecond) // two more intervals, nothing changed
	if st := a.status("v"); st["head_snapshot"] != head {
		t.Errorf("an unchanged volume published snapshot %v (head was %v)", st["head_snapshot"], head)
	}
	st, err := localdir.New(a.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := snapshot.Open(context.Background(), st, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := repo.List(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		var ids []string
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
		t.Errorf("keep_last=2 left %d snapshots: %v", len(infos), ids)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a1"))
}
