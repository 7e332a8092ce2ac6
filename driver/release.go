package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/writer"
)

// maxRetryWait caps the backoff of background retries.
const maxRetryWait = time.Minute

// startRelease runs the end of v's ownership as its job: stop the periodic
// snapshots, take the final snapshot if the copy has unpublished changes
// (it is quiescent now: nothing has it mounted), publish it, release the
// lease. Store failures are retried until it succeeds, the job is
// cancelled (a Mount on this host takes the lease back) or the lease turns
// out lost (fencing).
func (d *Driver) startRelease(v *vstate, l *lease.Lease) *job {
	name := v.name
	log := d.log.WithField("volume", name).WithField("generation", l.Generation())
	return d.startJob(v, "release", "", func(ctx context.Context, j *job) error {
		d.stopPeriodic(v)
		var made string // a snapshot created but not yet published
		wait := d.retryBase
		for {
			err := d.releaseOnce(ctx, v, l, j, &made)
			// A final snapshot was published, or the release failed; a
			// release stopped by a remount on this host did not fail.
			if made != "" && err == nil || err != nil && ctx.Err() == nil {
				d.obs.SnapshotDone(name, err)
			}
			switch {
			case err == nil:
				return nil
			case errors.Is(err, lease.ErrFenced):
				d.fenceLater(name, l.Generation(), err)
				return err
			case ctx.Err() != nil:
				return ctx.Err()
			}
			err = fmt.Errorf("final snapshot and release of volume %q failed, retrying in %s: %w", name, wait, err)
			log.WithError(err).Warn("release failed")
			d.setLastError(name, err)
			if sleepCtx(ctx, wait) != nil {
				return ctx.Err()
			}
			wait = min(2*wait, maxRetryWait)
		}
	})
}

func (d *Driver) releaseOnce(ctx context.Context, v *vstate, l *lease.Lease, j *job, made *string) error {
	name := v.name
	b, err := d.store(ctx)
	if err != nil {
		return err
	}
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return err
	}
	retain := false
	if _, serr := os.Stat(d.dataDir(name)); rec.Dirty && serr == nil {
		// The create-and-publish every writer runs (package writer); a
		// snapshot an earlier attempt made is published, not made again.
		var base localcopy.Frozen
		res, err := writer.Snapshot(ctx, b.Snapshots, l, "", writer.SnapshotOptions{
			Host: d.hostID, StatCache: d.statCache(name), Progress: j.setProgress, SkipUnchanged: true, Made: *made,
			Create: func(ctx context.Context, o snapshot.CreateOptions) (*snapshot.Manifest, error) {
				m, f, err := d.createSnapshot(ctx, b, name, o)
				base = f
				return m, err
			},
		})
		if res.ID != "" {
			*made = res.ID
		}
		switch m := res.Manifest; {
		case m != nil && res.Unchanged:
			d.log.WithField("volume", name).WithField("head", m.ID).Info("final snapshot: nothing changed since the head; nothing published")
		case m != nil:
			d.log.WithField("volume", name).WithField("snapshot", m.ID).WithField("read", m.Stats.BytesRead).WithField("new", m.Stats.NewBytes).WithField("uploaded", m.Stats.UploadedBytes).Info("final snapshot taken")
		}
		if err != nil {
			return err
		}
		unchanged := res.Unchanged
		// The retention policy runs after the release, off the path of a
		// host waiting for the volume (it lists the volume's snapshots,
		// more of them the more often they are taken): prune.Forget
		// protects whatever head it reads, so it needs no lease.
		retain = res.Published
		if err := d.update(ctx, name, func(r *metadata.Volume) {
			r.LocalSnapshot, r.Dirty = *made, false
			recordBase(r, *made, base)
			if unchanged {
				r.ConfirmedAt = time.Now().UTC()
			}
		}); err != nil {
			return err
		}
		d.view.invalidate(name)
	}
	if err := ctx.Err(); err != nil {
		return err // a Mount on this host took the lease back
	}
	if err := l.Release(ctx); err != nil {
		return err
	}
	if err := d.afterRelease(ctx, v, l); err != nil {
		return err
	}
	head, opts := *made, rec.Options
	d.goBackground(func(ctx context.Context) {
		if retain {
			d.retain(ctx, b, name, opts, head)
		}
		// The base this release's snapshot replaced, under the volume
		// lock and not while a restore (which drops every base) runs.
		unlock, err := d.locks.lock(ctx, name)
		if err != nil {
			return
		}
		defer unlock()
		if j := d.state(name).currentJob(); j == nil || j.kind != "restore" {
			d.dropOlderBases(ctx, name)
		}
	})
	return nil
}

// afterRelease records that this host released v's lease l (its release
// applied, as this host knows from the answer or from settling it): the
// copy stays as the last snapshot this host published, and nothing here
// holds the volume any more.
func (d *Driver) afterRelease(ctx context.Context, v *vstate, l *lease.Lease) error {
	name := v.name
	_, statErr := os.Stat(d.dataDir(name))
	err := d.update(ctx, name, func(r *metadata.Volume) {
		r.Generation, r.LastError, r.LastErrorAt = 0, "", time.Time{}
		switch {
		case r.Local == metadata.LocalDiverged:
		case statErr != nil:
			r.Local = metadata.LocalAbsent
		default:
			r.Local = metadata.LocalReady
		}
	})
	d.view.invalidate(name)
	v.mu.Lock()
	same := v.lease == l
	v.mu.Unlock()
	if same {
		d.dropLease(v)
	}
	d.log.WithField("volume", name).WithField("head", l.Head()).Info("volume released")
	return err
}

// startPeriodic snapshots v every interval while it is mounted and
// publishes each snapshot. They are taken while containers write, so each
// is only as consistent as a crash at that moment; the final snapshot at
// unmount is the quiescent one.
func (d *Driver) startPeriodic(v *vstate, l *lease.Lease, interval time.Duration) {
	d.obs.SnapshotInterval(v.name, interval)
	if interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(d.bg)
	done := make(chan struct{})
	v.mu.Lock()
	v.perStop, v.perDone = cancel, done
	v.mu.Unlock()
	log := d.log.WithField("volume", v.name)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			id, err := d.periodicSnapshot(ctx, v.name, l)
			if ctx.Err() == nil {
				d.obs.SnapshotDone(v.name, err)
			}
			switch {
			case errors.Is(err, lease.ErrFenced):
				d.fenceLater(v.name, l.Generation(), err)
				return
			case ctx.Err() != nil:
				return
			case err != nil:
				log.WithError(err).Warn("periodic snapshot failed; trying again at the next interval")
				d.setLastError(v.name, fmt.Errorf("periodic snapshot: %w", err))
			case id == "":
				log.Debug("periodic snapshot: nothing changed; nothing published")
			default:
				log.WithField("snapshot", id).Info("periodic snapshot published")
			}
		}
	}()
}

func (d *Driver) periodicSnapshot(ctx context.Context, name string, l *lease.Lease) (string, error) {
	b, err := d.store(ctx)
	if err != nil {
		return "", err
	}
	var base localcopy.Frozen
	res, err := writer.Snapshot(ctx, b.Snapshots, l, "", writer.SnapshotOptions{
		Host: d.hostID, StatCache: d.statCache(name), SkipUnchanged: true,
		Create: func(ctx context.Context, o snapshot.CreateOptions) (*snapshot.Manifest, error) {
			m, f, err := d.createSnapshot(ctx, b, name, o)
			base = f
			return m, err
		},
	})
	if err != nil {
		return "", err
	}
	m := res.Manifest
	if res.Unchanged {
		// Nothing changed: no identical snapshot; the head is confirmed.
		if err := d.update(ctx, name, func(r *metadata.Volume) {
			r.LocalSnapshot, r.ConfirmedAt, r.LastError, r.LastErrorAt = m.ID, time.Now().UTC(), "", time.Time{}
			recordBase(r, m.ID, base)
		}); err != nil {
			return "", err
		}
		d.dropOlderBases(ctx, name)
		return "", nil
	}
	d.view.invalidate(name)
	if rec, err := d.db.Volume(ctx, name); err == nil {
		d.retain(ctx, b, name, rec.Options, m.ID)
	}
	if err := d.update(ctx, name, func(r *metadata.Volume) {
		r.LocalSnapshot, r.LastError, r.LastErrorAt = m.ID, "", time.Time{}
		recordBase(r, m.ID, base)
	}); err != nil {
		return m.ID, err
	}
	d.dropOlderBases(ctx, name)
	return m.ID, nil
}

// warnCache logs that a snapshot could not write its stat cache (the
// state directory is full, say): the snapshot is fine, the next one reads
// every file again.
func (d *Driver) warnCache(name string, err error) {
	if err != nil {
		d.log.WithField("volume", name).WithError(err).Warn("snapshot taken without its stat cache: the next snapshot reads every file; free space in the state directory")
	}
}
