package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
)

// restoreMargin is what a Mount keeps after waiting for a restore, to
// bind and answer before dockerd's deadline.
const restoreMargin = time.Second

// ensureData brings the data directory to the lease's head before a first
// mount, under the volume lock. A lease this host held all along (fresh
// false) means the local copy is the newest there is. A new acquisition
// means the copy must equal the head: it is used as is if it holds the
// head (with or without unpublished changes of this host's own making),
// restored otherwise — fetching only what it lacks — and moved aside
// first if it holds changes the head does not have.
func (d *Driver) ensureData(ctx context.Context, b *Backend, v *vstate, l *lease.Lease, fresh bool) error {
	name, head := v.name, l.Head()
	if j := v.currentJob(); j != nil && j.kind == "restore" && j.target == head {
		return d.awaitRestore(ctx, name, j) // a restore of this very snapshot is running
	}
	if err := d.stopJob(ctx, v); err != nil {
		return err
	}
	// The record is read after the job stopped: a pull that finished as it
	// was cancelled has changed which snapshot the copy holds.
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(d.dataDir(name))
	exists := statErr == nil
	switch {
	case !fresh && rec.Local == metadata.LocalRestoring && head != "":
		// Restarted during a restore of our own lease: do it again.
	case exists && rec.LocalSnapshot == head, !fresh && exists && rec.Dirty:
		// The copy holds the head, or this host's own changes on top of
		// it (a lease held all along). A lease kept after a restore that
		// failed is not held "all along": its copy is older than the head
		// (clean, at an older snapshot) and is restored below.
		return nil
	case exists && rec.Dirty:
		aside, err := d.moveAside(name, "diverged-"+time.Now().UTC().Format("20060102T150405Z"))
		if err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
		msg := fmt.Sprintf("this host's copy had changes that are not in the head snapshot %q; it was moved to %s and the head restored", head, aside)
		d.log.WithField("volume", name).Warn(msg)
		if err := d.update(ctx, name, func(r *metadata.Volume) {
			r.Aside, r.Dirty, r.LocalSnapshot, r.LastError, r.LastErrorAt = append(r.Aside, aside), false, "", msg, time.Now().UTC()
		}); err != nil {
			return err
		}
		rec.LocalSnapshot, exists = "", false
	}
	if head == "" {
		// Nothing was ever published: the volume is empty.
		if exists {
			return nil
		}
		fs, err := d.createCopy(ctx, name, rec.Options)
		if err != nil {
			return err
		}
		return d.update(ctx, name, func(r *metadata.Volume) { r.Local, r.LocalSnapshot, r.Filesystem = metadata.LocalReady, "", fs })
	}
	previous := ""
	if exists {
		previous = rec.LocalSnapshot
	}
	return d.awaitRestore(ctx, name, d.startRestore(v, head, previous, true))
}

// startRestore restores snapshot target into name's data directory as v's
// job. previous is the snapshot the directory holds ("" if unknown or
// none): only chunks it lacks are fetched. leased says the job runs under
// this host's lease: if no Mount comes for the restored copy within
// restoreIdle, the lease is released.
func (d *Driver) startRestore(v *vstate, target, previous string, leased bool) *job {
	name := v.name
	_ = d.update(context.Background(), name, func(r *metadata.Volume) { r.Local = metadata.LocalRestoring })
	log := d.log.WithField("volume", name).WithField("snapshot", target)
	log.Info("restoring")
	return d.startJob(v, "restore", target, func(ctx context.Context, j *job) error {
		b, err := d.store(ctx)
		if err == nil {
			err = d.restoreCopy(ctx, b, name, target, previous, j)
		}
		if err != nil {
			_ = d.update(ctx, name, func(r *metadata.Volume) {
				r.Local = metadata.LocalAbsent
				if c, lerr := d.localOf(*r); lerr == nil {
					if ok, _ := c.Exists(ctx, name); ok {
						r.Local = metadata.LocalReady
					}
				}
				if !errors.Is(err, context.Canceled) {
					r.LastError, r.LastErrorAt = fmt.Sprintf("restoring snapshot %s: %s", target, err), time.Now().UTC()
				}
			})
			if !errors.Is(err, context.Canceled) {
				log.WithError(err).Error("restore failed")
			}
			return fmt.Errorf("volume %q: restoring snapshot %s: %w", name, target, err)
		}
		p := j.progress()
		_ = d.update(ctx, name, func(r *metadata.Volume) {
			r.Local, r.LocalSnapshot, r.Dirty, r.LastError, r.LastErrorAt = metadata.LocalReady, target, false, "", time.Time{}
		})
		log.WithField("bytes", p.Bytes).WithField("fetched", p.Transferred).WithField("reused", p.Reused).Info("restored")
		if leased {
			if l := v.holding(); l != nil {
				gen := l.Generation()
				d.goBackground(func(ctx context.Context) { d.idleRelease(ctx, name, gen) })
			}
		}
		d.measureLater(name)
		return nil
	})
}

// restoreCopy restores snapshot target of name into a restore target of
// the implementation new copies go to (a new subvolume, or a directory
// beside the live one), then puts it in place of the live copy
// atomically. previous is the snapshot the live copy holds ("" if
// unknown): chunks it still has are copied from it instead of fetched.
// A directory copy restored into a subvolume stays one (and its directory
// is deleted).
func (d *Driver) restoreCopy(ctx context.Context, b *Backend, name, target, previous string, j *job) error {
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return err
	}
	to := d.copies
	from, ferr := d.localOf(rec)
	reuse := ""
	if ferr == nil {
		if ok, _ := from.Exists(ctx, name); ok {
			reuse = from.Path(name)
		}
	}
	if reuse == "" {
		previous = ""
	}
	// A copy that holds previous, clean, in the implementation new copies
	// go to: restore in place into a writable snapshot of it (btrfs), so
	// the cost follows the delta; the swap below keeps it atomic.
	// previous must be what the record says the copy holds now: an
	// in-place restore from the wrong base would leave a mix.
	inPlace := ferr == nil && from == to && previous != "" && previous == rec.LocalSnapshot && reuse != "" && !rec.Dirty
	t0 := time.Now()
	t, err := to.RestoreTarget(ctx, name, inPlace, createOptions(to, rec.Options))
	if err != nil {
		return err
	}
	inPlace = inPlace && t.Populated
	tTarget := time.Now()
	err = b.Snapshots.Restore(ctx, name, target, t.Path, snapshot.RestoreOptions{
		Into: !inPlace, InPlace: inPlace, ReuseDir: reuse, Previous: previous, StatCache: d.statCache(name),
		Progress: func(p snapshot.Progress) {
			j.setProgress(p)
			d.obs.RestoreProgress(name, p.BytesDone, p.Bytes)
		},
	})
	if err != nil {
		if aerr := to.AbortRestore(context.WithoutCancel(ctx), t); aerr != nil {
			d.log.WithField("volume", name).WithError(aerr).Warn("could not delete an unfinished restore target; the next restore removes it")
		}
		return err
	}
	tRestored := time.Now()
	if ferr == nil {
		d.dropBase(ctx, from, name) // the base belongs to the copy being replaced
	}
	// From the swap until the job records target, the record must not name
	// the old snapshot: after a crash in between, an in-place restore from
	// it onto the new copy would leave a mix. Unknown costs a full restore.
	if err := d.update(ctx, name, func(r *metadata.Volume) { r.LocalSnapshot = "" }); err != nil {
		_ = to.AbortRestore(context.WithoutCancel(ctx), t)
		return err
	}
	if err := to.CommitRestore(ctx, t); err != nil {
		_ = to.AbortRestore(context.WithoutCancel(ctx), t)
		return err
	}
	moved := ferr == nil && from != to
	if err := d.update(ctx, name, func(r *metadata.Volume) { r.Filesystem = to.Filesystem() }); err != nil {
		return err
	}
	if moved && reuse != "" && reuse != to.Path(name) {
		// The directory copy this restore replaced (the restored copy is
		// the volume from now on).
		if err := from.Remove(context.WithoutCancel(ctx), name); err != nil {
			d.log.WithField("volume", name).WithError(err).Warn("restored into a subvolume, but could not delete the old directory copy")
		}
	}
	if moved && reuse != "" {
		d.log.WithField("volume", name).WithField("filesystem", to.Filesystem()).Info("the volume's copy moved into a " + to.Filesystem() + " subvolume with this restore")
	}
	// Where the restore's time went (the handoff bench prints it).
	d.log.WithField("volume", name).WithField("phases", fmt.Sprintf("in place %v: target %v, fetch and write %v, swap %v",
		inPlace, tTarget.Sub(t0).Round(time.Millisecond), tRestored.Sub(tTarget).Round(time.Millisecond), time.Since(tRestored).Round(time.Millisecond))).Debug("restore phases")
	return nil
}

// awaitRestore waits for restore job j until shortly before ctx's
// deadline; if it is still running then, the error says how far it got.
func (d *Driver) awaitRestore(ctx context.Context, name string, j *job) error {
	wait := time.Hour
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl) - restoreMargin
	}
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-j.done:
		return j.err
	case <-t.C:
	case <-ctx.Done():
	}
	return &kindError{kind: ErrBusy, msg: restoringMessage(name, j.progress())}
}

// restoringMessage is what a Mount answers while a restore runs on.
func restoringMessage(name string, p snapshot.Progress) string {
	if p.Bytes == 0 {
		return fmt.Sprintf("restoring %s: reading the snapshot, try again shortly", name)
	}
	return fmt.Sprintf("restoring %s: %s, try again shortly", name, progressText(p))
}

// progressText is "45% (2.9 GiB of 6.5 GiB)".
func progressText(p snapshot.Progress) string {
	pct := uint64(0)
	if p.Bytes > 0 {
		pct = p.BytesDone * 100 / p.Bytes
	}
	return fmt.Sprintf("%d%% (%s of %s)", pct, humanize.IBytes(p.BytesDone), humanize.IBytes(p.Bytes))
}

// idleRelease gives back the lease of a restore that no Mount came for.
func (d *Driver) idleRelease(ctx context.Context, name string, gen uint64) {
	if sleepCtx(ctx, d.restoreIdle) != nil {
		return
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return
	}
	defer unlock()
	v := d.state(name)
	l := v.holding()
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil || mounts.Total() > 0 || l == nil || l.Generation() != gen || v.currentJob() != nil {
		return
	}
	d.log.WithField("volume", name).Info("no Mount came for the restored copy: releasing the volume")
	d.settle(ctx, v)
}
