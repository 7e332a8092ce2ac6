package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portvol/portvol/metadata"
)

// Volume is what Get and List report about a volume.
type Volume struct {
	Name string
	// Mountpoint is set while the volume is mounted.
	Mountpoint string
	CreatedAt  time.Time
	// Status is shown by docker volume inspect (Get only).
	Status map[string]any
}

// Create creates volume name with options opts (see ParseOptions). A repeat
// Create with the same options (after defaults are filled in) succeeds; with
// different options it fails with ErrConflict.
func (d *Driver) Create(ctx context.Context, name string, opts map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	norm, err := ParseOptions(opts)
	if err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()

	existing, err := d.db.Volume(ctx, name)
	switch {
	case err == nil:
		if maps.Equal(existing.Options, norm) {
			return nil
		}
		return errorf(ErrConflict, "volume %q already exists with other options (%s): create it with the same options, or remove it first", name, diffOptions(existing.Options, norm))
	case !errors.Is(err, metadata.ErrNotFound):
		return err
	}

	log := d.log.WithField("volume", name)
	data := d.dataDir(name)
	adopted := false
	if st, err := os.Stat(data); err == nil && st.IsDir() {
		// Left by a state database that was lost or by an interrupted
		// removal: keep the data rather than hide it.
		adopted = true
		log.Warn("a data directory without a record exists for this name: the new volume keeps its contents")
	} else if err := mkdirDurable(data); err != nil {
		return fmt.Errorf("volume %q: create data directory: %w", name, err)
	}
	now := time.Now().UTC()
	rec := metadata.Volume{
		Name:      name,
		Options:   norm,
		CreatedAt: now,
		CreatedBy: d.hostID,
		Local:     metadata.LocalPresent,
		SizeAt:    now,
	}
	if err := d.db.CreateVolume(ctx, rec); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if adopted {
		d.measureLater(name)
	}
	log.Info("volume created")
	return nil
}

// Remove deletes volume name and its data. It fails with ErrInUse while any
// mount count is above zero; an unknown name succeeds.
func (d *Driver) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()

	if _, err := d.db.Volume(ctx, name); errors.Is(err, metadata.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return err
	}
	if n := mounts.Total(); n > 0 {
		return errorf(ErrInUse, "volume %q is in use: mounted %d time(s) under %d mount ID(s); stop and remove the containers that use it, then retry", name, n, len(mounts))
	}
	if err := d.unbind(name); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	// Move the data out of the way first: after a crash between the two
	// steps the record says "missing" rather than the data reappearing.
	trash := filepath.Join(d.stateDir, "trash", name+"."+strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := os.Rename(d.volumeDir(name), trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("volume %q: move data to %s: %w", name, trash, err)
	}
	if err := syncDir(filepath.Dir(trash)); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := d.db.DeleteVolume(ctx, name); err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	d.goBackground(func(context.Context) { d.removeTrash(trash) })
	d.log.WithField("volume", name).Info("volume removed")
	return nil
}

// Get describes volume name; an unknown name fails with ErrNotFound.
func (d *Driver) Get(ctx context.Context, name string) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, errorf(ErrNotFound, "%s", err)
	}
	v, err := d.db.Volume(ctx, name)
	if err != nil {
		return Volume{}, d.notFound(name, err)
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return Volume{}, err
	}
	out := d.describe(v, mounts)
	sizeAt := "never"
	if !v.SizeAt.IsZero() {
		sizeAt = v.SizeAt.Format(time.RFC3339)
	}
	out.Status = map[string]any{
		"local":             string(v.Local),
		"mounted":           mounts.Total() > 0,
		"mounts":            mounts.Total(),
		"mount_ids":         len(mounts),
		"size_bytes":        v.SizeBytes,
		"size_measured_at":  sizeAt,
		"created_by":        v.CreatedBy,
		OptSnapshotInterval: v.Options[OptSnapshotInterval],
		OptTakeover:         v.Options[OptTakeover],
	}
	return out, nil
}

// List describes every volume (without Status).
func (d *Driver) List(ctx context.Context) ([]Volume, error) {
	vols, err := d.db.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	all, err := d.db.AllMounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Volume, 0, len(vols))
	for _, v := range vols {
		out = append(out, d.describe(v, all[v.Name]))
	}
	return out, nil
}

// Path returns the Mountpoint while volume name is mounted, "" otherwise.
// It has no side effects.
func (d *Driver) Path(ctx context.Context, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if _, err := d.db.Volume(ctx, name); err != nil {
		return "", d.notFound(name, err)
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

func (d *Driver) describe(v metadata.Volume, mounts metadata.Mounts) Volume {
	out := Volume{Name: v.Name, CreatedAt: v.CreatedAt}
	if mounts.Total() > 0 {
		out.Mountpoint = d.mountpoint(v.Name)
	}
	return out
}

// notFound translates metadata's ErrNotFound into the driver's.
func (d *Driver) notFound(name string, err error) error {
	if errors.Is(err, metadata.ErrNotFound) {
		return errorf(ErrNotFound, "volume %q does not exist on this host", name)
	}
	return err
}
