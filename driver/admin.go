package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
)

// Status describes volume name, or every volume in the store and on this
// host if name is "", sorted by name.
func (d *Driver) Status(ctx context.Context, name string) ([]VolumeStatus, error) {
	var names []string
	if name != "" {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		names = []string{name}
	} else {
		vols, err := d.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range vols {
			names = append(names, v.Name)
		}
	}
	out := make([]VolumeStatus, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = d.statusOf(ctx, n)
		}()
	}
	wg.Wait()
	if name != "" && errs[0] != nil {
		return nil, errs[0]
	}
	var kept []VolumeStatus
	for i := range out {
		if errs[i] == nil {
			kept = append(kept, out[i])
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	return kept, nil
}

func (d *Driver) statusOf(ctx context.Context, name string) (VolumeStatus, error) {
	rec, err := d.db.Volume(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return VolumeStatus{}, err
	}
	in, serr := d.cachedInfo(ctx, name)
	switch {
	case serr == nil && !in.Exists() && (!known || rec.Incarnation != ""):
		return VolumeStatus{}, errorf(ErrNotFound, "volume %q does not exist", name)
	case serr != nil && !known:
		return VolumeStatus{}, fmt.Errorf("volume %q: cannot tell whether it exists: %w", name, serr)
	case !known:
		rec = metadata.Volume{Name: name, Options: in.Vol.Options, CreatedAt: in.Vol.CreatedAt, CreatedBy: in.Vol.CreatedBy, Local: metadata.LocalAbsent}
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return VolumeStatus{}, err
	}
	var inp *info
	if serr == nil {
		inp = &in
	}
	return d.describe(rec, mounts, inp, serr), nil
}

// TakeoverResult is what a takeover did.
type TakeoverResult struct {
	Volume string `json:"volume"`
	// From is the host the lease was taken from, "" if nobody held it.
	From           string `json:"from,omitempty"`
	FromGeneration uint64 `json:"from_generation,omitempty"`
	Forced         bool   `json:"forced,omitempty"`
	// Generation is the generation taken (and released again).
	Generation uint64 `json:"generation"`
	// Head is the last published snapshot: what the next Mount restores.
	Head string `json:"head"`
	// Message says what happened and what was lost, for people.
	Message string `json:"message"`
}

// Takeover takes volume name over from a host that stopped renewing its
// lease: allowed once this host has watched the lease unchanged for a full
// TTL (it watches for up to a TTL and a bit if it has not yet; progress is
// called with what it sees), or at once with force. The generation goes
// up, so the old holder can never publish again; then the lease is
// released, so the next Mount anywhere acquires it normally and restores
// the last published snapshot.
func (d *Driver) Takeover(ctx context.Context, name string, force bool, progress func(string)) (TakeoverResult, error) {
	res := TakeoverResult{Volume: name}
	if err := ValidateName(name); err != nil {
		return res, err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	b, err := d.store(ctx)
	if err != nil {
		return res, fmt.Errorf("volume %q: %w", name, err)
	}
	if _, _, err := d.localRecord(ctx, b, name); err != nil {
		return res, err
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return res, err
	}
	v := d.state(name)
	if l := v.holding(); l != nil || mounts.Total() > 0 {
		return res, errorf(ErrInvalid, "volume %q is owned by this host (mounted %d time(s)): nothing to take over", name, mounts.Total())
	}
	if err := d.stopJob(ctx, v); err != nil {
		return res, err
	}
	o, err := b.Leases.Inspect(ctx, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	wait := o.TTL + 2*time.Second
	if progress != nil && o.Exists && o.Record.State == lease.Held && !force {
		progress(fmt.Sprintf("host %s holds volume %s (generation %d); watching its lease for up to %s: a takeover needs it unchanged for %s", o.Record.Owner, name, o.Record.Generation, wait.Round(time.Second), o.TTL))
	}
	var said time.Time
	l, err := b.Leases.Takeover(ctx, name, lease.TakeoverOptions{Force: force, Wait: wait, Progress: func(h *lease.HeldError) {
		if progress != nil && time.Since(said) >= time.Second {
			said = time.Now()
			progress(fmt.Sprintf("lease of %s unchanged for %s of %s", h.Owner, h.Unchanged.Round(100*time.Millisecond), h.TTL))
		}
	}})
	if err != nil {
		return res, &kindError{kind: ErrBusy, cause: err, msg: err.Error()}
	}
	res.Generation, res.Head = l.Generation(), l.Head()
	note := ""
	if t := l.TookOver(); t != nil {
		res.From, res.FromGeneration, res.Forced = t.From, t.Generation, t.Forced
		res.Message = takeoverNote(t, l.Head())
		note = res.Message + " (" + time.Now().UTC().Format(time.RFC3339) + ")"
	}
	if err := d.update(ctx, name, func(r *metadata.Volume) {
		r.Generation = l.Generation()
		if note != "" {
			r.TakenOver = note
		}
	}); err != nil {
		return res, err
	}
	if note != "" {
		d.log.WithField("volume", name).WithField("from", res.From).Warn("takeover: " + res.Message)
	} else {
		res.Message = fmt.Sprintf("volume %s was not held by another host: nothing to take over", name)
	}
	if err := l.Release(ctx); err != nil {
		return res, fmt.Errorf("volume %q: taken over at generation %d, but releasing it failed (the next Mount here resumes it): %w", name, l.Generation(), err)
	}
	d.view.invalidate(name)
	return res, d.update(ctx, name, func(r *metadata.Volume) { r.Generation = 0 })
}

// PullResult is what a pull did.
type PullResult struct {
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"` // the snapshot this host's copy holds now
	Message  string `json:"message"`
	Fetched  uint64 `json:"fetched_bytes"` // bytes received from the store
	Reused   uint64 `json:"reused_bytes"`  // bytes taken from the older local copy
}

// Pull brings this host's copy of volume name to the store's head snapshot
// without taking the lease (published snapshots never change), so that a
// later Mount here fetches only what changed after. It refuses while the
// volume is mounted here or the copy has unpublished changes. progress is
// called while the restore runs; an interrupted call leaves the restore
// running.
func (d *Driver) Pull(ctx context.Context, name string, progress func(snapshot.Progress)) (PullResult, error) {
	res := PullResult{Volume: name}
	if err := ValidateName(name); err != nil {
		return res, err
	}
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
			res.Message = fmt.Sprintf("volume %s now holds snapshot %s on this host (%s fetched, %s reused from the older copy)", name, j.target, bytesText(p.Transferred), bytesText(p.Reused))
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
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	b, err := d.store(ctx)
	if err != nil {
		return nil, fmt.Errorf("volume %q: %w", name, err)
	}
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
		return nil, errorf(ErrInUse, "volume %q is mounted on this host: its copy is in use and the newest there is; nothing to pull", name)
	case j != nil && j.kind == "release":
		return nil, errorf(ErrBusy, "volume %q: this host is still uploading its final snapshot: its copy is newer than the store's; nothing to pull", name)
	case j != nil:
		return j, nil // a restore is running: report on it
	case v.holding() != nil:
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

// UndeleteResult is what an undelete did.
type UndeleteResult struct {
	Volume    string    `json:"volume"`
	Head      string    `json:"head"` // the snapshot the next Mount restores
	RemovedAt time.Time `json:"removed_at"`
	Message   string    `json:"message"`
}

// Undelete brings volume name back from the store's trash (its newest
// entry): its record, snapshots and head. It fails if the name exists.
func (d *Driver) Undelete(ctx context.Context, name string) (UndeleteResult, error) {
	res := UndeleteResult{Volume: name}
	if err := ValidateName(name); err != nil {
		return res, err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	b, err := d.store(ctx)
	if err != nil {
		return res, fmt.Errorf("volume %q: %w", name, err)
	}
	in, err := d.readInfo(ctx, b, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	if in.Exists() {
		return res, errorf(ErrConflict, "volume %q exists: nothing to undelete (remove it first to bring back an older one)", name)
	}
	if in.Removed {
		if err := d.finishRemoval(ctx, b, name); err != nil {
			return res, err
		}
	}
	entries, err := catalog.Trash(ctx, b.Store, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	if len(entries) == 0 {
		return res, errorf(ErrNotFound, "volume %q is not in the trash (removed volumes are kept for %s)", name, d.trashRetention)
	}
	e := entries[len(entries)-1]
	var head string
	var headGen uint64
	data, _, err := b.Store.Load(ctx, catalog.TrashCopyKey(name, e.ID, lease.HeadKey(name)))
	if err == nil {
		r, derr := lease.Decode(data)
		if derr != nil {
			return res, fmt.Errorf("volume %q: the trash's copy of its head record: %w", name, derr)
		}
		head, headGen = r.Head, r.HeadGeneration
	}
	if err := b.Leases.Undelete(ctx, name, head, headGen); err != nil {
		return res, err
	}
	if err := catalog.RestoreFromTrash(ctx, b.Store, name, e.ID); err != nil {
		return res, err
	}
	d.view.invalidate(name)
	res.Head, res.RemovedAt = head, e.Removed
	res.Message = fmt.Sprintf("volume %s (removed %s) is back", name, e.Removed.Format(time.RFC3339))
	if head != "" {
		res.Message += fmt.Sprintf("; its next Mount restores snapshot %s", head)
	}
	d.log.WithField("volume", name).Info("undeleted")
	return res, nil
}

// bytesText prints n bytes for people.
func bytesText(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
