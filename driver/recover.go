package driver

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
)

// recoverTimeout bounds the store calls of one volume's recovery.
const recoverTimeout = 30 * time.Second

// recoverAll finishes, once the store is reachable, what this host was
// doing with its volumes when it stopped: every volume whose record says
// this host holds a lease is resumed (recoverVolume), and volumes created
// by a single-host portvol are registered in the store. Volumes busy with
// a call are left for the next round (every recoverEvery).
func (d *Driver) recoverAll(ctx context.Context) {
	vols, err := d.db.Volumes(ctx)
	if err != nil {
		d.log.WithError(err).Error("recovery: cannot read the state database")
		return
	}
	for _, rec := range vols {
		if ctx.Err() != nil {
			return
		}
		switch {
		case rec.Incarnation == "" || rec.Generation > 0:
			d.recoverVolume(ctx, rec.Name)
		case !d.orphans.cleared(rec.Name):
			d.giveBackOrphan(ctx, rec.Name)
		}
	}
}

// lockIdle takes name's volume lock for a recovery round (waiting at most
// a second: a busy volume is looked at next round) and returns the store,
// unless the store is out of reach or this process holds or works on the
// volume; ok is false then, and nothing is held.
func (d *Driver) lockIdle(ctx context.Context, name string) (b *Backend, unlock func(), ok bool) {
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	unlock, err := d.locks.lock(lctx, name)
	cancel()
	if err != nil {
		return nil, nil, false
	}
	b, err = d.store(ctx)
	v := d.state(name)
	if err != nil || v.holding() != nil || v.currentJob() != nil {
		unlock()
		return nil, nil, false
	}
	return b, unlock, true
}

// recoverVolume resumes the lease recorded for name, under the volume
// lock. Then: a volume still mounted (the plugin restarted under running
// containers) keeps its lease alive and snapshots periodically; an
// interrupted restore starts again; anything else is settled (final
// snapshot if needed, release). A lease lost meanwhile fences the copy.
func (d *Driver) recoverVolume(ctx context.Context, name string) {
	b, unlock, ok := d.lockIdle(ctx, name)
	if !ok {
		return
	}
	defer unlock()
	v := d.state(name)
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	log := d.log.WithField("volume", name)
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return
	}
	if rec.Incarnation == "" {
		if _, err := d.adoptLegacy(ctx, b, rec); err != nil {
			log.WithError(err).Warn("could not register a single-host volume in the store; retrying in a minute")
			return
		}
		if rec, err = d.db.Volume(ctx, name); err != nil {
			return
		}
	}
	if rec.Generation == 0 {
		return
	}
	l, err := b.Leases.Resume(ctx, name, rec.Generation)
	switch {
	case errors.Is(err, lease.ErrReleased):
		d.resolveReleased(ctx, b, name, rec.Generation)
		return
	case errors.Is(err, lease.ErrFenced):
		d.fenceLocked(ctx, name, rec.Generation, err)
		return
	case err != nil:
		log.WithError(err).Warn("could not resume this host's lease; retrying in a minute")
		d.setLastError(name, err)
		return
	}
	d.hold(v, l)
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return
	}
	_, statErr := os.Stat(d.dataDir(name))
	switch {
	case mounts.Total() > 0:
		_ = d.update(ctx, name, func(r *metadata.Volume) { r.Local, r.Dirty = metadata.LocalMounted, true })
		interval, _ := time.ParseDuration(rec.Options[OptSnapshotInterval])
		d.startPeriodic(v, l, interval)
		log.WithField("generation", l.Generation()).Info("resumed ownership of a mounted volume")
	case rec.Local == metadata.LocalRestoring && l.Head() != "":
		prev := ""
		if statErr == nil {
			prev = rec.LocalSnapshot
		}
		d.startRestore(v, l.Head(), prev, true)
	default:
		log.WithField("generation", l.Generation()).Info("resumed this host's lease to finish releasing the volume")
		d.settle(ctx, v)
	}
}

// orphanSet remembers the volumes this process found free of an orphaned
// lease (see giveBackOrphan), so it reads each record once, not every round.
type orphanSet struct {
	mu   sync.Mutex
	done map[string]bool
}

func (s *orphanSet) cleared(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[name]
}

func (s *orphanSet) clear(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = make(map[string]bool)
	}
	s.done[name] = true
}

// giveBackOrphan releases a lease of this host's id that no process knows:
// a process died between the write that made this host the holder (a
// Mount's acquisition, a takeover) and recording that generation in the
// state database, so nothing renews or releases it, and every other host's
// Mount is refused until it is released (a Mount here takes it over once
// it has seen it expired: lease.Manager's successor). Once this process has
// seen the record unchanged for a full TTL (a fresh process must watch a
// TTL first, so it happens at the first round after that), it acquires it
// (lease.Manager.Acquire takes over only such an expired lease of our own
// id, never another host's, and its CAS on the ETag seen fails if anybody
// renewed meanwhile) and releases it at once, so the next Mount anywhere
// acquires the volume normally. A lease of our id that is still renewed
// (another host configured with the same id) is left alone.
//
// Only a previous process's crash leaves such a lease, so a volume found
// without one is not looked at again by this process.
func (d *Driver) giveBackOrphan(ctx context.Context, name string) {
	b, unlock, ok := d.lockIdle(ctx, name)
	if !ok {
		return
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	rec, err := d.db.Volume(ctx, name)
	if err != nil || rec.Generation > 0 {
		return
	}
	o, err := b.Leases.Inspect(ctx, name)
	if err != nil {
		return
	}
	if !o.Exists || o.Record.State != lease.Held || o.Record.Owner != d.hostID {
		d.orphans.clear(name)
		return
	}
	if !o.Expired() {
		return // watch it until the next round
	}
	log := d.log.WithField("volume", name).WithField("generation", o.Record.Generation)
	l, err := b.Leases.Acquire(ctx, name)
	if err != nil {
		log.WithError(err).Warn("could not give back a lease of this host's id that no process holds; retrying in a minute")
		return
	}
	if err := l.Release(ctx); err != nil {
		log.WithError(err).Warn("took over a lease of this host's id that no process held, but could not release it; retrying in a minute")
		return
	}
	d.view.invalidate(name)
	d.orphans.clear(name)
	log.Warn("released a lease of this host's id that no process held (a previous run died before recording it)")
}
