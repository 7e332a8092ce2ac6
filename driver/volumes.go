package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/metadata"
)

// Volume is what Get and List report about a volume.
type Volume struct {
	Name string
	// Mountpoint is set while the volume is mounted on this host.
	Mountpoint string
	CreatedAt  time.Time
	// Status is shown by docker volume inspect (Get only).
	Status map[string]any
}

// Create creates volume name with options opts (see ParseOptions) in the
// store, which makes it visible on every host, and records it on this
// host. A repeat Create with the same options (after defaults are filled
// in) succeeds, also on another host; with different options it fails with
// ErrConflict naming the differences. A name whose volume was removed is
// created afresh, empty.
func (d *Driver) Create(ctx context.Context, name string, opts map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	norm, err := ParseOptions(opts)
	if err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if sizeLimit(norm) > 0 && d.copies.Filesystem() != localcopy.FilesystemBtrfs {
		return errorf(ErrInvalid, "volume %q: option size needs btrfs volumes, but this portvol keeps volumes in directories (--volume-fs directory, or a kernel without btrfs), which cannot enforce a limit: start portvol with --volume-fs btrfs, or create the volume without size", name)
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := d.store(ctx)
	if err != nil {
		return fmt.Errorf("volume %q: cannot create it: %w", name, err)
	}
	cv, created, err := d.createInStore(ctx, b, name, norm, time.Now().UTC(), d.hostID)
	if err != nil {
		return err
	}
	if !created && cv.Options[OptSize] != norm[OptSize] {
		have := cv.Options[OptSize]
		if have == "" {
			have = "none"
		}
		return errorf(ErrConflict, "volume %q already exists with size limit %s: the size limit of an existing volume cannot be changed; create a new volume with the size you want and copy the data over", name, have)
	}
	if !created && !maps.Equal(cv.Options, norm) {
		return errorf(ErrConflict, "volume %q already exists with other options (%s): create it with the same options, or remove it first", name, diffOptions(cv.Options, norm))
	}
	rec, err := d.db.Volume(ctx, name)
	switch {
	case err == nil && rec.Incarnation == incarnation(cv):
		return nil
	case err == nil:
		if busy, err := d.inUse(ctx, name); err != nil {
			return err
		} else if busy {
			// This host still uses its copy of an earlier volume of the
			// name: leave it be; its next first Mount takes the new one.
			d.log.WithField("volume", name).Warn("volume created again in the store while this host still uses its copy of the earlier one: that copy stays until it is unmounted")
			return nil
		}
		if _, _, err := d.localRecord(ctx, b, name); err != nil {
			if created {
				return d.undoCreate(ctx, b, name, err)
			}
			return err
		}
	case errors.Is(err, metadata.ErrNotFound):
		if _, err := d.remember(ctx, cv, created); err != nil {
			if created {
				return d.undoCreate(ctx, b, name, err)
			}
			return err
		}
	default:
		return err
	}
	if created {
		d.log.WithField("volume", name).Info("volume created")
	} else {
		d.log.WithField("volume", name).WithField("created_by", cv.CreatedBy).Info("volume exists in the store: recorded on this host")
	}
	return nil
}

// undoCreate takes back the store record of a volume this Create made
// when this host could not make its own part (its local copy, its
// record): the Create fails, so the volume must not exist anywhere. It
// goes the way of a removal (tombstone, then the record to the trash), so
// a host that has mounted it meanwhile keeps it: the tombstone is refused
// while another host holds the volume, and then it stays, said in the
// error. cause is the local failure.
func (d *Driver) undoCreate(ctx context.Context, b *Backend, name string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	err := b.Leases.Remove(ctx, name)
	if err == nil {
		err = d.finishRemoval(ctx, b, name)
	}
	d.view.invalidate(name)
	if err != nil {
		d.log.WithField("volume", name).WithError(err).Error("could not take back the store record of a volume whose creation failed on this host")
		return fmt.Errorf("%w; the volume was created in the store, and taking that back failed too (%s): remove it with docker volume rm once the cause is fixed", cause, err)
	}
	d.log.WithField("volume", name).WithError(cause).Warn("creation failed on this host: the volume's store record was taken back")
	return fmt.Errorf("%w (nothing was created: fix this and create the volume again)", cause)
}

// Remove moves volume name to the store's trash (portvol undelete brings
// it back within the retention) and forgets this host's copy. It fails
// with ErrInUse while it is mounted here or held by another host, and
// waits for this host's final snapshot of it; an unknown name succeeds.
func (d *Driver) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, lerr := d.db.Volume(ctx, name)
	if lerr != nil && !errors.Is(lerr, metadata.ErrNotFound) {
		return lerr
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return err
	}
	if mounts.Total() > 0 {
		if mounts, err = d.dropUnconfirmedForRemove(ctx, name, mounts); err != nil {
			return err
		}
	}
	if n := mounts.Total(); n > 0 {
		return errorf(ErrInUse, "volume %q is in use: mounted %d time(s) under %d mount ID(s); stop and remove the containers that use it, then retry", name, n, len(mounts))
	}
	b, err := d.store(ctx)
	if err != nil {
		return fmt.Errorf("volume %q: cannot remove it: %w", name, err)
	}
	v := d.state(name)
	if err := d.giveUp(ctx, v); err != nil {
		return err
	}
	in, err := d.readInfo(ctx, b, name)
	if err != nil {
		return errUnavailable(name, err)
	}
	// A head record with no volume record, released and without a head,
	// is a name claimed by a Create under way (CreateRecord): there is no
	// volume to remove, and a tombstone there would let an undelete slip
	// in under that Create.
	claimed := !in.Record && !in.Removed && in.Head.Exists && in.Head.Record.State == lease.Released && in.Head.Record.Head == ""
	// A head record that names a snapshot, with no volume record and no
	// tombstone, is an undelete under way (or interrupted): its objects are
	// still coming back from its trash entry. Removing it now would start a
	// second trash entry holding only part of them (and the head record's
	// copy), which the next undelete, taking the newest entry, would bring
	// back with a head whose snapshot is not in the store.
	if !in.Record && !in.Removed && in.Head.Exists && in.Head.Record.State != lease.Removed && in.Head.Record.Head != "" {
		return errorf(ErrBusy, "volume %q is being undeleted (its head record names snapshot %s, but its volume record is not back yet): retry in a moment; if an undelete was interrupted, run portvol undelete %s again to finish it, then remove it", name, in.Head.Record.Head, name)
	}
	if (in.Record || in.Removed || in.Head.Exists) && !claimed {
		if err := b.Leases.Remove(ctx, name); err != nil {
			var held *lease.HeldError
			if errors.As(err, &held) {
				return &kindError{kind: ErrInUse, cause: err, msg: err.Error()}
			}
			return errUnavailable(name, err)
		}
		if err := d.finishRemoval(ctx, b, name); err != nil {
			return err
		}
	}
	d.view.invalidate(name)
	if lerr == nil {
		if err := d.retire(ctx, rec, "the volume was removed"); err != nil {
			return err
		}
	}
	d.log.WithField("volume", name).Info("volume removed (kept in the store's trash)")
	return nil
}

// giveUp ends this host's ownership of v before a removal: it waits for a
// final snapshot in progress, stops a restore and releases the lease.
func (d *Driver) giveUp(ctx context.Context, v *vstate) error {
	if j := v.currentJob(); j != nil && j.kind == "restore" {
		if err := d.stopJob(ctx, v); err != nil {
			return err
		}
	}
	if v.holding() != nil && v.currentJob() == nil {
		d.settle(ctx, v)
	}
	j := v.currentJob()
	if j == nil {
		return nil
	}
	wait := time.Until(deadline(ctx)) - restoreMargin
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-j.done:
		if j.err != nil {
			return fmt.Errorf("volume %q: its final snapshot failed: %w", v.name, j.err)
		}
		return nil
	case <-t.C:
		return errorf(ErrBusy, "volume %q: its final snapshot is still uploading (%s); retry the removal shortly", v.name, progressText(j.progress()))
	}
}

// deadline is ctx's deadline, or an hour from now.
func deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(time.Hour)
}

// Get describes volume name as the store and this host know it. An
// unknown name fails with ErrNotFound; when the store cannot be reached,
// a volume this host knows is described from its records (never reported
// missing: dockerd forgets volumes reported missing).
func (d *Driver) Get(ctx context.Context, name string) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, errorf(ErrNotFound, "%s", err)
	}
	rec, lerr := d.db.Volume(ctx, name)
	if lerr != nil && !errors.Is(lerr, metadata.ErrNotFound) {
		return Volume{}, lerr
	}
	known := lerr == nil
	in, serr := d.cachedInfo(ctx, name)
	switch {
	case serr != nil && !known:
		return Volume{}, &kindError{kind: ErrUnavailable, cause: serr, msg: fmt.Sprintf("volume %q: cannot tell whether it exists: %s", name, serr)}
	case serr == nil && !in.Exists() && (!known || rec.Incarnation != ""):
		if known {
			d.forgetLater(name)
		}
		return Volume{}, errorf(ErrNotFound, "volume %q does not exist", name)
	case serr == nil && !known:
		if unlock, ok := d.locks.tryLock(name); ok {
			rec, lerr = d.remember(ctx, in.Vol, false)
			unlock()
			known = lerr == nil
		}
		if !known {
			rec = metadata.Volume{Name: name, Options: in.Vol.Options, CreatedAt: in.Vol.CreatedAt, CreatedBy: in.Vol.CreatedBy, Local: metadata.LocalAbsent}
		}
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return Volume{}, err
	}
	var inp *info
	if serr == nil {
		inp = &in
	}
	st := d.describe(rec, mounts, inp, serr)
	out := Volume{Name: name, CreatedAt: rec.CreatedAt, Status: st.Map(rec, mounts)}
	if mounts.Total() > 0 {
		out.Mountpoint = d.mountpoint(name)
	}
	return out, nil
}

// List describes every volume in the store (without Status); when the
// store cannot be reached, those this host knows.
func (d *Driver) List(ctx context.Context) ([]Volume, error) {
	vols, err := d.db.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	all, err := d.db.AllMounts(ctx)
	if err != nil {
		return nil, err
	}
	local := map[string]metadata.Volume{}
	for _, v := range vols {
		local[v.Name] = v
	}
	names, serr := d.cachedNames(ctx)
	if serr != nil {
		d.log.WithError(serr).Debug("listing from this host's records")
		names = names[:0]
		for _, v := range vols {
			names = append(names, v.Name)
		}
	} else {
		for _, v := range vols {
			if v.Incarnation == "" { // not in the store yet: still this host's
				names = append(names, v.Name)
			}
		}
		sort.Strings(names)
	}
	out := make([]Volume, 0, len(names))
	for i, name := range names {
		if i > 0 && names[i-1] == name {
			continue
		}
		v := Volume{Name: name, CreatedAt: local[name].CreatedAt}
		if all[name].Total() > 0 {
			v.Mountpoint = d.mountpoint(name)
		}
		out = append(out, v)
	}
	return out, nil
}

// Path returns the Mountpoint while volume name is mounted on this host,
// "" otherwise. It has no side effects.
func (d *Driver) Path(ctx context.Context, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if _, err := d.db.Volume(ctx, name); errors.Is(err, metadata.ErrNotFound) {
		if in, serr := d.cachedInfo(ctx, name); serr == nil && in.Exists() {
			return "", nil
		}
		return "", errorf(ErrNotFound, "volume %q does not exist on this host", name)
	} else if err != nil {
		return "", err
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return "", err
	}
	if mounts.Total() == 0 {
		return "", nil
	}
	return d.mountpoint(name), nil
}

// Capabilities returns the constant Scope; dockerd asks before nearly every
// call to a managed plugin.
func (d *Driver) Capabilities() string { return Scope }
