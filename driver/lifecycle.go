package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portvol/portvol/metadata"
)

// rollbackTimeout bounds the clean-up after a Mount that dockerd gave up on.
const rollbackTimeout = 10 * time.Second

// Mount counts one more mount of volume name by mount ID id and returns the
// Mountpoint. The first mount (all counts 0) prepares the data through
// firstMount. If ctx ends before Mount returns (dockerd gave up, or the
// handler's deadline passed), the count is rolled back: dockerd sends no
// Unmount after a failed Mount.
func (d *Driver) Mount(ctx context.Context, name, id string) (string, error) {
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

	v, err := d.db.Volume(ctx, name)
	if err != nil {
		return "", d.notFound(name, err)
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return "", err
	}
	first := mounts.Total() == 0
	if first {
		err = d.firstMount(ctx, v)
	} else {
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
// the volume lock, before the count is recorded. It makes the data
// available at the Mountpoint.
//
// The ownership work hooks in here: acquire the volume's lease, restore the
// latest snapshot into the data directory if this host's copy is older, and
// only then bind it. Everything it does must be undone by
// rollbackFirstMount.
func (d *Driver) firstMount(ctx context.Context, v metadata.Volume) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.ensureBound(v)
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
// and the Mountpoint directory, then measures the data's size in the
// background.
//
// The ownership work hooks in here: push a final snapshot and release the
// lease, after the data is no longer reachable through the Mountpoint.
func (d *Driver) lastUnmount(_ context.Context, name string) error {
	if err := d.unbind(name); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	d.measureLater(name)
	return nil
}

// ensureBound makes the Mountpoint a bind mount of the volume's data,
// checking the kernel's mount table rather than remembered state.
func (d *Driver) ensureBound(v metadata.Volume) error {
	data, mp := d.dataDir(v.Name), d.mountpoint(v.Name)
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		return fmt.Errorf("volume %q: its data directory %s is missing (local state %q): restore the directory, or remove the volume with docker volume rm and create it again", v.Name, data, v.Local)
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
