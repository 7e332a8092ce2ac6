package driver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/metadata"
)

// acquireMargin is what a Mount keeps for restoring and binding after
// waiting for another host's release.
const acquireMargin = 3 * time.Second

// ensureLease makes this host the volume's owner, under the volume lock. A
// lease this process holds is kept; a generation recorded before a restart
// is resumed; otherwise the volume is acquired, waiting up to MountWait
// for another host to release it (and taking an expired lease over when
// the volume has takeover=auto). fresh reports a new acquisition: then the
// local copy must be brought to the lease's head.
func (d *Driver) ensureLease(ctx context.Context, b *Backend, v *vstate, opts map[string]string) (l *lease.Lease, fresh bool, err error) {
	name := v.name
	if l := v.holding(); l != nil {
		// This host holds the lease but nothing has the volume mounted (a
		// release or a restore runs, or was just stopped by this Mount):
		// another host may have taken it over since this host last wrote
		// it, and a write of this lease may have an unknown outcome (the
		// release this Mount cancelled). Renew on top of the version this
		// host last knew before believing either way: it settles every
		// unknown write, and only a conditional write that applies proves
		// the lease is still this host's. Settle alone would not: with no
		// write of unknown outcome it does not ask the store.
		err := l.Renew(ctx)
		var fenced *lease.FencedError
		switch {
		case err == nil:
			return l, false, nil
		case errors.As(err, &fenced):
			kept := d.fenceLocked(ctx, name, l.Generation(), fenced)
			if kept == "" {
				kept = fmt.Sprintf("this host's copy was moved aside already (portvol status %s lists where)", name)
			}
			if c := fenced.Current; c != nil && c.State == lease.Held {
				// Taken by another host, which holds it still: the Mount
				// would only wait for it. Say who has it and where this
				// host's copy went.
				return nil, false, &kindError{kind: ErrBusy, cause: fenced, msg: fmt.Sprintf(
					"volume %q was taken over by host %q (generation %d) while this host still held generation %d without a mount (its unmount's release was running); this Mount is refused. %s; mount it again once %s releases it, or take it back with portvol takeover %s",
					name, c.Owner, c.Generation, l.Generation(), kept, c.Owner, name)}
			}
		case errors.Is(err, lease.ErrReleased):
			if err := d.afterRelease(ctx, v, l); err != nil {
				return nil, false, err
			}
			d.log.WithField("volume", name).WithField("generation", l.Generation()).Info("the release this Mount interrupted had applied: acquiring the volume again")
		default:
			return nil, false, errUnavailable(name, fmt.Errorf("finding out whether this host still holds the volume: %w", err))
		}
		d.dropLease(v)
	}
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return nil, false, err
	}
	if rec.Generation > 0 {
		l, err := b.Leases.Resume(ctx, name, rec.Generation)
		switch {
		case err == nil:
			d.hold(v, l)
			return l, false, nil
		case errors.Is(err, lease.ErrReleased):
			d.resolveReleased(ctx, b, name, rec.Generation)
		case errors.Is(err, lease.ErrFenced):
			d.fenceLocked(ctx, name, rec.Generation, err)
		default:
			return nil, false, errUnavailable(name, err)
		}
	}
	wait := d.mountWait
	if dl, ok := ctx.Deadline(); ok {
		wait = max(0, min(wait, time.Until(dl)-acquireMargin))
	}
	l, err = b.Leases.WaitAcquire(ctx, name, lease.WaitOptions{Wait: wait, AutoTakeover: opts[OptTakeover] == "auto"})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		msg := err.Error()
		if o, ierr := b.Leases.Inspect(context.WithoutCancel(ctx), name); ierr == nil && o.Exists && o.Record.State == lease.Held && !o.Record.Renewed.IsZero() {
			msg += fmt.Sprintf(" (its last renewal is stamped %s by %s's clock, %s ago by this host's)",
				o.Record.Renewed.UTC().Format(time.RFC3339), o.Record.Owner, time.Since(o.Record.Renewed).Round(time.Second))
		}
		return nil, false, &kindError{kind: ErrBusy, cause: err, msg: msg}
	case errors.Is(err, lease.ErrRemoved):
		return nil, false, &kindError{kind: ErrNotFound, cause: err, msg: err.Error()}
	case err != nil:
		return nil, false, errUnavailable(name, err)
	}
	// While this Mount waited, the volume may have been removed and
	// created again: the lease is then a newer volume's than the record
	// this host has. Give it back; the caller starts over with the volume
	// the store has now.
	if in, err := d.readInfo(ctx, b, name); err != nil || !in.Exists() || rec.Incarnation != "" && incarnation(in.Vol) != rec.Incarnation {
		if rerr := l.Release(context.WithoutCancel(ctx)); rerr != nil {
			d.log.WithField("volume", name).WithError(rerr).Warn("could not give back a lease taken for a volume that changed meanwhile; it expires")
		}
		switch {
		case err != nil:
			return nil, false, errUnavailable(name, err)
		case !in.Exists():
			return nil, false, errorf(ErrNotFound, "volume %q was removed while this Mount waited for it: create it again with docker volume create", name)
		}
		return nil, false, errRecreated
	}
	// Record the generation before anything else: after a crash the
	// restarted process resumes it instead of finding its own lease held
	// by a stranger.
	if err := d.update(ctx, name, func(r *metadata.Volume) { r.Generation = l.Generation() }); err != nil {
		_ = l.Release(context.WithoutCancel(ctx))
		return nil, false, fmt.Errorf("volume %q: record the lease: %w", name, err)
	}
	d.hold(v, l)
	d.view.invalidate(name)
	log := d.log.WithField("volume", name).WithField("generation", l.Generation())
	if t := l.TookOver(); t != nil {
		note := takeoverNote(t, l.Head())
		log.WithField("from", t.From).WithField("forced", t.Forced).Warn(note)
		_ = d.update(ctx, name, func(r *metadata.Volume) { r.TakenOver = note + " (" + time.Now().UTC().Format(time.RFC3339) + ")" })
	} else {
		log.Info("lease acquired")
	}
	return l, true, nil
}

// errRecreated: the volume was removed and created again while a Mount
// waited for its lease; the Mount starts over with the new volume.
var errRecreated = errors.New("the volume was created again while this Mount waited")

// takeoverNote says what a takeover lost.
func takeoverNote(t *lease.Takeover, head string) string {
	lost := fmt.Sprintf("whatever %s wrote after snapshot %s is gone", t.From, head)
	if head == "" {
		lost = fmt.Sprintf("nothing %s wrote is kept: it never published a snapshot", t.From)
	}
	how := "after it stopped renewing"
	if t.Forced {
		how = "by force"
	}
	return fmt.Sprintf("generation %d was taken over from host %s %s: %s", t.Generation+1, t.From, how, lost)
}

// resolveReleased records that generation gen of name was released before
// this process could record it (a crash after the release): the local
// copy holds the head if this generation published it.
func (d *Driver) resolveReleased(ctx context.Context, b *Backend, name string, gen uint64) {
	o, err := b.Leases.Inspect(ctx, name)
	_ = d.update(ctx, name, func(r *metadata.Volume) {
		if err == nil && o.Exists && o.Record.Head != "" && o.Record.HeadGeneration == gen {
			r.LocalSnapshot, r.Dirty = o.Record.Head, false
		}
		r.Generation = 0
		if r.Local == metadata.LocalReleasing || r.Local == metadata.LocalRestoring {
			r.Local = metadata.LocalReady
		}
	})
}

// fenceLater runs fenceLocked under the volume lock, in the background.
func (d *Driver) fenceLater(name string, gen uint64, cause error) {
	d.goBackground(func(ctx context.Context) {
		unlock, err := d.locks.lock(ctx, name)
		if err != nil {
			return
		}
		defer unlock()
		d.fenceLocked(ctx, name, gen, cause)
	})
}

// fenceLocked handles the loss of generation gen of name to another host,
// under the volume lock: stop everything that could publish, move the
// local copy aside (never delete it: a running container keeps writing
// into it through its bind mount), and say so in the status and the log.
// The next Mount restores the store's head. It does nothing if gen was
// handled already. It returns what became of the copy ("" if it did
// nothing), for a caller that tells the user.
func (d *Driver) fenceLocked(ctx context.Context, name string, gen uint64, cause error) (kept string) {
	v := d.state(name)
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return ""
	}
	if l := v.holding(); rec.Generation != gen && (l == nil || l.Generation() != gen) {
		return ""
	}
	bg := context.WithoutCancel(ctx)
	_ = d.stopJob(bg, v)
	d.stopPeriodic(v)
	d.dropLease(v)
	aside, err := d.moveAside(name, fmt.Sprintf("fenced-%d-%s", gen, time.Now().UTC().Format("20060102T150405Z")))
	kept = fmt.Sprintf("this host's copy is kept at %s (portvol import can turn it into a new volume) and nothing more from it reaches the store; the next Mount here restores the store's head snapshot", filepath.Join(d.stateDir, aside))
	switch {
	case err != nil:
		kept = fmt.Sprintf("moving this host's copy aside failed (%s): it stays at %s, which the next Mount will refuse to overwrite", err, d.dataDir(name))
	case aside == "":
		kept = "this host had no copy of its data"
	}
	msg := fmt.Sprintf("%s; %s", cause, kept)
	_ = d.update(bg, name, func(r *metadata.Volume) {
		r.Generation, r.Local, r.Dirty, r.LastError, r.LastErrorAt = 0, metadata.LocalDiverged, false, msg, time.Now().UTC()
		if aside != "" {
			r.LocalSnapshot = ""
			r.Aside = append(r.Aside, aside)
		}
	})
	d.view.invalidate(name)
	d.log.WithField("volume", name).WithField("generation", gen).Error("fenced: " + msg)
	return kept
}

// moveAside renames name's copy to <its volume dir>/<as> (beside it, on
// its filesystem) and returns that path relative to the state directory;
// "" if there was no copy. The copy's base instant is dropped with it.
func (d *Driver) moveAside(name, as string) (string, error) {
	ctx := context.Background()
	rec, err := d.db.Volume(ctx, name)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return "", err
	}
	rec.Name = name
	c, err := d.localOf(rec)
	if err != nil {
		return "", err
	}
	if ok, err := c.Exists(ctx, name); err != nil || !ok {
		return "", err
	}
	dst, err := c.MoveAside(ctx, name, as)
	if errors.Is(err, localcopy.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	d.dropBase(ctx, c, name)
	return d.relToState(dst), nil
}

// settle gives up the lease of a volume nobody mounts any more, under the
// volume lock: the final snapshot first if the copy has unpublished
// changes, then the release. It runs as a job, retrying store failures.
func (d *Driver) settle(ctx context.Context, v *vstate) {
	l := v.holding()
	if l == nil || v.currentJob() != nil {
		return
	}
	_ = d.update(ctx, v.name, func(r *metadata.Volume) {
		if r.Dirty {
			r.Local = metadata.LocalReleasing
		}
	})
	d.startRelease(v, l)
}

// inUse reports whether this host uses its copy of name: mounted, holding
// its lease, or restoring or releasing it. A copy in use is never retired,
// even when the store has a newer volume of that name: its Unmount (or
// its fencing) comes first.
func (d *Driver) inUse(ctx context.Context, name string) (bool, error) {
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return false, err
	}
	v := d.state(name)
	return mounts.Total() > 0 || v.holding() != nil || v.currentJob() != nil, nil
}
