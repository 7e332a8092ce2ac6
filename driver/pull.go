package driver

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/portvol/portvol/snapshot"
)

// PullResult is what a pull did.
type PullResult struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"` // the snapshot this host's copy holds now
	Message  string `json:"message"`
	Fetched  uint64 `json:"fetched_bytes"` // bytes received from the store
	Reused   uint64 `json:"reused_bytes"`  // bytes taken from the older local copy
	// Owned: this host owns the volume (mounted here, holding its lease
	// or uploading its final snapshot): its copy is the newest there is.
	Owned bool `json:"owned,omitempty"`
}

// Pull brings this host's copy of volume name to the store's head snapshot
// without taking the lease (published snapshots never change), so that a
// later Mount here fetches only what changed after. It refuses while the
// volume is mounted here or the copy has unpublished changes. progress is
// called while the restore runs; an interrupted call leaves the restore
// running.
func (d *Driver) Pull(ctx context.Context, name string, progress func(snapshot.Progress)) (PullResult, error) {
	res := PullResult{Volume: name}
	j, err := d.startPull(ctx, name, &res)
	if err != nil || j == nil {
		return res, err
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-j.done:
			if j.err != nil {
				return res, j.err
			}
			p := j.progress()
			res.Snapshot, res.Fetched, res.Reused = j.target, p.Transferred, p.Reused
			res.Message = fmt.Sprintf("volume %s now holds snapshot %s on this host (%s fetched, %s reused from the older copy)", name, j.target, humanize.IBytes(p.Transferred), humanize.IBytes(p.Reused))
			return res, nil
		case <-t.C:
			if progress != nil {
				progress(j.progress())
			}
		case <-ctx.Done():
			return res, fmt.Errorf("volume %q: stopped waiting; the pull goes on in the background: %w", name, ctx.Err())
		}
	}
}

// startPull checks and starts a pull under the volume lock; a nil job
// with a nil error means there is nothing to do (res says why).
func (d *Driver) startPull(ctx context.Context, name string, res *PullResult) (*job, error) {
	b, unlock, err := d.lockWithStore(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, in, err := d.localRecord(ctx, b, name)
	if err != nil {
		return nil, err
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return nil, err
	}
	v := d.state(name)
	j := v.currentJob()
	switch {
	case mounts.Total() > 0:
		res.Owned = true
		return nil, errorf(ErrInUse, "volume %q is mounted on this host: its copy is in use and the newest there is; nothing to pull", name)
	case j != nil && j.kind == "release":
		res.Owned = true
		return nil, errorf(ErrBusy, "volume %q: this host is still uploading its final snapshot: its copy is newer than the store's; nothing to pull", name)
	case j != nil:
		return j, nil // a restore is running: report on it
	case v.holding() != nil:
		res.Owned = true
		res.Snapshot, res.Message = rec.LocalSnapshot, fmt.Sprintf("this host owns volume %s: its copy is the newest there is", name)
		return nil, nil
	}
	head := in.Head.Record.Head
	_, statErr := os.Stat(d.dataDir(name))
	exists := statErr == nil
	switch {
	case head == "":
		res.Message = fmt.Sprintf("volume %s has no published snapshot yet: nothing to pull", name)
		return nil, nil
	case exists && rec.Dirty:
		return nil, errorf(ErrBusy, "volume %q: this host's copy has changes that were never published; mount it here (this host then publishes them) or move %s away first", name, d.dataDir(name))
	case exists && rec.LocalSnapshot == head:
		res.Snapshot, res.Message = head, fmt.Sprintf("volume %s is already at snapshot %s on this host", name, head)
		return nil, nil
	}
	previous := ""
	if exists {
		previous = rec.LocalSnapshot
	}
	return d.startRestore(v, head, previous, false), nil
}
