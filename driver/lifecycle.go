package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
)

// rollbackTimeout bounds the clean-up after a Mount that dockerd gave up on.
const rollbackTimeout = 10 * time.Second

// storeReadTimeout bounds a Mount's first look at the store, so that an
// unreachable store fails it early with a clear error.
const storeReadTimeout = 10 * time.Second

// Mount counts one more mount of volume name by mount ID id and returns the
// Mountpoint. The first mount (all counts 0) takes ownership and prepares
// the data through firstMount. If ctx ends before Mount returns (dockerd
// gave up, or the handler's deadline passed), the count is rolled back:
// dockerd sends no Unmount after a failed Mount. The count is recorded as
// not yet answered: the caller answers and confirms it (the handler's
// answerMount); a count whose answer was never begun is dropped at the
// next start (driver/answers.go).
func (d *Driver) Mount(ctx context.Context, name, id string) (mp string, err error) {
	start := time.Now()
	defer func() { d.obs.MountDone(name, time.Since(start), err) }()
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := validateID(id); err != nil {
		return "", fmt.Errorf("volume %q: %w", name, err)
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return "", err
	}
	defer unlock()

	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return "", err
	}
	first := mounts.Total() == 0
	if !first {
		if first, err = d.dropFencedCounts(ctx, name); err != nil {
			return "", err
		}
	}
	var v metadata.Volume
	if first {
		v, err = d.firstMount(ctx, name)
	} else if v, err = d.db.Volume(ctx, name); err == nil {
		// Mounted already, but dockerd may have unmounted everything under
		// the plugin (disable, engine restart): put the bind back.
		err = d.ensureBound(v)
	}
	if err != nil {
		return "", err
	}
	if _, err := d.db.AddMount(ctx, name, id); err != nil {
		if first {
			d.rollbackFirstMount(ctx, v)
		}
		return "", fmt.Errorf("volume %q: record mount: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		// dockerd has stopped waiting and will never unmount this ID.
		d.rollbackMount(ctx, v, id)
		return "", fmt.Errorf("volume %q: mount abandoned by the caller, undone: %w", name, err)
	}
	if first {
		d.log.WithField("volume", name).WithField("mount_id", id).Info("volume mounted")
	}
	return d.mountpoint(name), nil
}

// dropFencedCounts drops the mount counts of a copy this host lost to
// another host (fenced: Local diverged) and reports whether it did. Those
// counts belong to containers that write into the copy kept aside; when
// dockerd died with them (a node that lost power, or whose engine was
// killed, and came back) their Unmount never comes, and the counts would
// make every later Mount here bind to a copy that is gone. A new Mount
// starts over as a first mount (it takes the volume and restores the
// head); a late Unmount of an old ID is a no-op.
func (d *Driver) dropFencedCounts(ctx context.Context, name string) (bool, error) {
	rec, err := d.db.Volume(ctx, name)
	if errors.Is(err, metadata.ErrNotFound) || (err == nil && rec.Local != metadata.LocalDiverged) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := d.db.DeleteMounts(ctx, name); err != nil {
		return false, fmt.Errorf("volume %q: drop the mount counts of the fenced copy: %w", name, err)
	}
	d.log.WithField("volume", name).Warn("dropped the mount counts of a copy this host lost to another host: this Mount starts over")
	return true, nil
}

// Unmount counts one mount of volume name by id less; the last one releases
// the data through lastUnmount. Unknown volumes and IDs succeed: dockerd
// unmounts IDs this host may have forgotten.
func (d *Driver) Unmount(ctx context.Context, name, id string) error {
	log := d.log.WithField("volume", name).WithField("mount_id", id)
	if ValidateName(name) != nil {
		log.Debug("unmount of an invalid name: nothing to do")
		return nil
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()

	mounts, found, err := d.db.RemoveMount(ctx, name, id)
	if err != nil {
		return fmt.Errorf("volume %q: record unmount: %w", name, err)
	}
	if !found {
		log.Info("unmount of a mount ID this host does not count: nothing to do")
		return nil
	}
	if mounts.Total() > 0 {
		return nil
	}
	if err := d.lastUnmount(ctx, name); err != nil {
		return err
	}
	log.Info("volume unmounted")
	return nil
}

// firstMount runs on the 0→1 transition of a volume's mount count, under
// the volume lock, before the count is recorded: it makes this host the
// owner (ensureLease), brings the data to the head snapshot (ensureData),
// binds it at the Mountpoint and starts the periodic snapshots. A failure
// after the lease was taken gives the lease back, unless a restore keeps
// running (the next Mount picks it up).
func (d *Driver) firstMount(ctx context.Context, name string) (metadata.Volume, error) {
	b, err := d.store(ctx)
	if err != nil {
		return metadata.Volume{}, fmt.Errorf("volume %q: %w", name, err)
	}
	var (
		rec   metadata.Volume
		v     *vstate
		l     *lease.Lease
		fresh bool
	)
	for range 3 {
		rctx, cancel := context.WithTimeout(ctx, storeReadTimeout)
		var in info
		rec, in, err = d.localRecord(rctx, b, name)
		cancel()
		if err != nil {
			return rec, err
		}
		v = d.state(name)
		// A release still running here (a remount right after an unmount):
		// stop it. Whether its lease is still this host's is settled by
		// ensureLease before anything relies on it.
		if j := v.currentJob(); j != nil && j.kind == "release" {
			if err := d.stopJob(ctx, v); err != nil {
				return rec, fmt.Errorf("volume %q: waiting for the previous unmount's upload to stop: %w", name, err)
			}
		}
		l, fresh, err = d.ensureLease(ctx, b, v, in.Vol.Options)
		if !errors.Is(err, errRecreated) {
			break
		}
		d.log.WithField("volume", name).Info("the volume was removed and created again while this Mount waited: mounting the new volume")
	}
	if errors.Is(err, errRecreated) {
		return rec, errorf(ErrBusy, "volume %q was removed and created again, over and over, while this Mount waited for it: retry", name)
	}
	if err != nil {
		// A lease this host still holds (its release stopped above, but
		// settling it failed) is given up again: nobody mounts the volume.
		if v.holding() != nil && v.currentJob() == nil {
			d.settle(context.WithoutCancel(ctx), v)
		}
		return rec, err
	}
	ok := false
	defer func() {
		if !ok && v.currentJob() == nil {
			d.settle(context.WithoutCancel(ctx), v)
		}
	}()
	if err := d.ensureData(ctx, b, v, l, fresh); err != nil {
		return rec, err
	}
	if rec, err = d.db.Volume(ctx, name); err != nil {
		return rec, err
	}
	if err := d.ensureBound(rec); err != nil {
		return rec, err
	}
	if err := d.update(ctx, name, func(r *metadata.Volume) {
		r.Local, r.Dirty, r.LastError, r.LastErrorAt = metadata.LocalMounted, true, "", time.Time{}
	}); err != nil {
		_ = d.unbind(name)
		return rec, err
	}
	ok = true
	interval, _ := time.ParseDuration(rec.Options[OptSnapshotInterval])
	d.startPeriodic(v, l, interval)
	return rec, nil
}

// rollbackFirstMount undoes firstMount when the mount could not be counted.
func (d *Driver) rollbackFirstMount(ctx context.Context, v metadata.Volume) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if err := d.lastUnmount(ctx, v.Name); err != nil {
		d.log.WithField("volume", v.Name).WithError(err).Error("undo of an abandoned first mount failed; the next start reconciles it")
	}
}

// rollbackMount takes back a counted mount of id that dockerd abandoned.
func (d *Driver) rollbackMount(ctx context.Context, v metadata.Volume, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	log := d.log.WithField("volume", v.Name).WithField("mount_id", id)
	mounts, _, err := d.db.RemoveMount(ctx, v.Name, id)
	if err != nil {
		log.WithError(err).Error("could not take back the count of an abandoned mount: remove the volume's containers and restart the plugin")
		return
	}
	if mounts.Total() == 0 {
		if err := d.lastUnmount(ctx, v.Name); err != nil {
			log.WithError(err).Error("undo of an abandoned first mount failed; the next start reconciles it")
		}
	}
	log.Warn("mount abandoned by dockerd (timeout or disconnect): count taken back")
}

// lastUnmount runs on the 1→0 transition (and to undo firstMount), under
// the volume lock, after the count is recorded. It removes the bind mount
// and returns at once; the final snapshot, its publication and the release
// of the lease run in the background (settle). Until they are done the
// volume is "releasing" and the lease stays held; a crash in between is
// finished by the next start.
func (d *Driver) lastUnmount(ctx context.Context, name string) error {
	if err := d.unbind(name); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	defer d.measureLater(name)
	rec, err := d.db.Volume(ctx, name)
	if err != nil || rec.Local == metadata.LocalDiverged {
		return nil // fenced: nothing of this copy goes to the store
	}
	v := d.state(name)
	if v.holding() == nil {
		if rec.Generation > 0 {
			// Held before a restart, not resumed yet: recovery finishes it.
			return d.update(ctx, name, func(r *metadata.Volume) { r.Local = metadata.LocalReleasing })
		}
		return d.update(ctx, name, func(r *metadata.Volume) { r.Local = metadata.LocalReady })
	}
	d.settle(ctx, v)
	return nil
}

// ensureBound makes the Mountpoint a bind mount of the volume's data,
// checking the kernel's mount table rather than remembered state.
func (d *Driver) ensureBound(v metadata.Volume) error {
	data, mp := d.dataDir(v.Name), d.mountpoint(v.Name)
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		if v.Local == metadata.LocalDiverged {
			return fmt.Errorf("volume %q: %s", v.Name, v.LastError)
		}
		return fmt.Errorf("volume %q: its data directory %s is missing (local state %q): restore the directory, or unmount the volume everywhere on this host so that the next mount restores the store's head snapshot", v.Name, data, v.Local)
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("volume %q: create mountpoint: %w", v.Name, err)
	}
	mounted, err := d.mnt.Mounted(mp)
	if err != nil {
		return fmt.Errorf("volume %q: %w", v.Name, err)
	}
	if mounted {
		if sameDir(mp, data) {
			return nil
		}
		d.log.WithField("volume", v.Name).Warn("something else is mounted at the mountpoint: replacing it with the volume's data")
		if err := d.mnt.Unmount(mp); err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	if err := d.mnt.Bind(data, mp); err != nil {
		return fmt.Errorf("volume %q: %w", v.Name, err)
	}
	return nil
}

// unbind removes every mount at name's Mountpoint and the directory itself.
// It never removes anything recursively: a directory still in use fails the
// rmdir and stays.
func (d *Driver) unbind(name string) error {
	mp := d.mountpoint(name)
	for range 8 { // mounts can be stacked; a few are plenty
		mounted, err := d.mnt.Mounted(mp)
		if err != nil {
			return err
		}
		if !mounted {
			break
		}
		if err := d.mnt.Unmount(mp); err != nil {
			return err
		}
	}
	if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mountpoint: %w", err)
	}
	return nil
}
