package driver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
)

// vstate is what this process knows of a volume beyond its bbolt record:
// the lease it holds and the work running for it in the background.
//
// Locking: the volume lock (d.locks) serialises Create, Remove, Mount,
// Unmount, the CLI operations and the fencing and recovery tasks. Jobs
// (restore, release) and the periodic-snapshot loop never take it, because
// lock holders wait for them; they only change the bbolt record in ways
// nobody else does while they run. mu guards the fields.
type vstate struct {
	name string

	mu       sync.Mutex
	lease    *lease.Lease
	keepStop context.CancelFunc
	keepDone chan struct{}
	perStop  context.CancelFunc
	perDone  chan struct{}
	job      *job
}

// job is a restore or the final snapshot and release of a volume.
type job struct {
	kind   string // "restore" or "release"
	target string // restore: the snapshot being restored
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
	prog   atomic.Pointer[snapshot.Progress]
}

func (j *job) setProgress(p snapshot.Progress) { j.prog.Store(&p) }

// progress returns the last progress report, zero before the first.
func (j *job) progress() snapshot.Progress {
	if p := j.prog.Load(); p != nil {
		return *p
	}
	return snapshot.Progress{}
}

func (j *job) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// state returns the vstate of name, creating it.
func (d *Driver) state(name string) *vstate {
	d.volsMu.Lock()
	defer d.volsMu.Unlock()
	v := d.vols[name]
	if v == nil {
		v = &vstate{name: name}
		d.vols[name] = v
	}
	return v
}

// holding returns the lease this process holds on v, or nil.
func (v *vstate) holding() *lease.Lease {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lease
}

// currentJob returns the running job, or nil.
func (v *vstate) currentJob() *job {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.job != nil && v.job.finished() {
		return nil
	}
	return v.job
}

// startJob runs fn as v's job. The caller holds the volume lock and has
// made sure no other job runs.
func (d *Driver) startJob(v *vstate, kind, target string, fn func(context.Context, *job) error) *job {
	ctx, cancel := context.WithCancel(d.bg)
	j := &job{kind: kind, target: target, cancel: cancel, done: make(chan struct{})}
	v.mu.Lock()
	v.job = j
	v.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		j.err = fn(ctx, j)
		close(j.done)
	}()
	return j
}

// stopJob cancels v's job, if any, and waits for it to end (or ctx).
func (d *Driver) stopJob(ctx context.Context, v *vstate) error {
	j := v.currentJob()
	if j == nil {
		return nil
	}
	j.cancel()
	return waitJob(ctx, j)
}

func waitJob(ctx context.Context, j *job) error {
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hold makes l the lease this process holds on v and keeps it alive
// (renewal every TTL/3) until dropLease. Losing it to another host starts
// the fencing of the volume.
func (d *Driver) hold(v *vstate, l *lease.Lease) {
	ctx, cancel := context.WithCancel(d.bg)
	done := make(chan struct{})
	v.mu.Lock()
	v.lease, v.keepStop, v.keepDone = l, cancel, done
	v.mu.Unlock()
	d.obs.LeaseHeld(v.name, true)
	log := d.log.WithField("volume", v.name).WithField("generation", l.Generation())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(done)
		// Renew only while this host's record of the volume knows the
		// lease: a removal, or a newer volume of the name, forgets it.
		known := func() error {
			rec, err := d.db.Volume(ctx, v.name)
			switch {
			case errors.Is(err, metadata.ErrNotFound):
				return errUnknownLease
			case err != nil:
				return nil // the database answers again later; keep the lease meanwhile
			case rec.Generation != l.Generation():
				return errUnknownLease
			}
			return nil
		}
		err := l.KeepAliveWhile(ctx, known, func(err error, lapsed bool) {
			switch {
			case err == nil:
				log.Info("lease renewed again")
				d.setLastError(v.name, nil)
			case lapsed:
				log.WithError(err).Error("cannot renew the lease for a whole TTL: other hosts may now take the volume over")
				d.setLastError(v.name, err)
			default:
				log.WithError(err).Warn("lease renewal failed; retrying")
			}
		})
		switch {
		case errors.Is(err, lease.ErrFenced):
			d.fenceLater(v.name, l.Generation(), err)
		case errors.Is(err, errUnknownLease) && !l.Status().Released:
			log.Error("stopped renewing a lease that this host's record of the volume does not know (the volume was removed or created again); it expires")
			v.mu.Lock()
			if v.lease == l {
				v.lease, v.keepStop, v.keepDone = nil, nil, nil
			}
			v.mu.Unlock()
			d.obs.LeaseHeld(v.name, false)
		}
	}()
}

// errUnknownLease: the lease kept alive is not the one this host's record
// of the volume holds.
var errUnknownLease = errors.New("no record of this host knows the lease")

// dropLease stops keeping v's lease alive and forgets it.
func (d *Driver) dropLease(v *vstate) {
	v.mu.Lock()
	stop, done := v.keepStop, v.keepDone
	v.lease, v.keepStop, v.keepDone = nil, nil, nil
	v.mu.Unlock()
	if stop != nil {
		stop()
		<-done
		d.obs.LeaseHeld(v.name, false)
	}
}

// stopPeriodic stops v's periodic snapshots and waits for a running one.
func (d *Driver) stopPeriodic(v *vstate) {
	v.mu.Lock()
	stop, done := v.perStop, v.perDone
	v.perStop, v.perDone = nil, nil
	v.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// update changes name's record; it is not cancelled with the caller, so
// that what happened in the store is always recorded.
func (d *Driver) update(ctx context.Context, name string, fn func(*metadata.Volume)) error {
	return d.db.UpdateVolume(context.WithoutCancel(ctx), name, func(r *metadata.Volume) error {
		fn(r)
		return nil
	})
}

// setLastError records (or with nil clears) the last error of name's
// background work, for status output.
func (d *Driver) setLastError(name string, err error) {
	_ = d.update(context.Background(), name, func(r *metadata.Volume) {
		if err == nil {
			r.LastError, r.LastErrorAt = "", time.Time{}
			return
		}
		r.LastError, r.LastErrorAt = err.Error(), time.Now().UTC()
	})
}
