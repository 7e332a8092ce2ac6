package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
)

// createInStore creates volume name's record in the store, first clearing
// a removed volume of that name (finishing its move to the trash and
// reviving its head record, so generations keep rising). It returns the
// record in the store and whether this call created it.
func (d *Driver) createInStore(ctx context.Context, b *Backend, name string, opts map[string]string, at time.Time, by string) (catalog.Volume, bool, error) {
	in, err := d.readInfo(ctx, b, name)
	if err != nil {
		return catalog.Volume{}, false, errUnavailable(name, err)
	}
	if in.Removed {
		if err := d.finishRemoval(ctx, b, name); err != nil {
			return catalog.Volume{}, false, err
		}
		if err := b.Leases.Revive(ctx, name); err != nil {
			// Another host may have revived it first (creating it too).
			if again, rerr := d.readInfo(ctx, b, name); rerr != nil || again.Removed {
				return catalog.Volume{}, false, errUnavailable(name, err)
			}
		}
	}
	cv, created, err := catalog.Create(ctx, b.Store, catalog.Volume{Name: name, Options: opts, CreatedAt: at, CreatedBy: by})
	d.view.invalidate(name)
	if err != nil {
		if errors.Is(err, catalog.ErrCorrupt) {
			return cv, false, fmt.Errorf("volume %q: %w; inspect volumes/%s/volume.json in the store", name, err, name)
		}
		return cv, false, errUnavailable(name, err)
	}
	return cv, created, nil
}

// trashKeys are the objects of volume name that move to the trash; the
// record goes first, so the volume leaves listings at once.
func trashKeys(name string) []string {
	return append([]string{catalog.Key(name)}, snapshot.VolumePrefixes(name)...)
}

// finishRemoval moves a removed volume's objects to the store's trash
// entry named after its tombstone, so any host (and any retry) finishes
// the same move. The tombstone itself stays: it keeps the generation
// rising if the name is created again, and its copy in the trash keeps
// the head snapshot for undelete.
func (d *Driver) finishRemoval(ctx context.Context, b *Backend, name string) error {
	o, err := b.Leases.Inspect(ctx, name)
	if err != nil {
		return errUnavailable(name, err)
	}
	if !o.Exists || o.Record.State != lease.Removed {
		return fmt.Errorf("volume %q: not removed (its head record is %s); nothing to move to the trash", name, o.Record.State)
	}
	id := catalog.TrashID(o.Record.Renewed)
	if err := catalog.MoveToTrash(ctx, b.Store, name, id, trashKeys(name), []string{lease.HeadKey(name)}); err != nil {
		return errUnavailable(name, err)
	}
	d.view.invalidate(name)
	return nil
}

// purgeTrash deletes the store's trash entries removed before cutoff.
func purgeTrash(ctx context.Context, b *Backend, cutoff time.Time) ([]catalog.TrashEntry, error) {
	return catalog.PurgeTrash(ctx, b.Store, cutoff)
}

// adoptLegacy registers a volume that a single-host portvol created on
// this host (a record without an incarnation) in the store, under the
// volume lock. Its data has never been published: it is marked dirty, so
// the next unmount publishes it. If the store has another volume of that
// name, the local copy is left to localRecord, which treats it as a copy
// with unpublished changes (moved aside, never lost).
func (d *Driver) adoptLegacy(ctx context.Context, b *Backend, rec metadata.Volume) (info, error) {
	by := rec.CreatedBy
	if by == "" {
		by = d.hostID
	}
	cv, _, err := d.createInStore(ctx, b, rec.Name, rec.Options, rec.CreatedAt, by)
	if err != nil {
		return info{}, err
	}
	if incarnation(cv) == incarnation(catalogOf(rec, by)) {
		err = d.update(ctx, rec.Name, func(r *metadata.Volume) {
			r.Incarnation, r.Dirty = incarnation(cv), true
			if r.Local == metadata.LocalPresent {
				r.Local = metadata.LocalReady
			}
		})
		if err != nil {
			return info{}, err
		}
		d.log.WithField("volume", rec.Name).Info("volume of a single-host portvol registered in the store")
	}
	return d.readInfo(ctx, b, rec.Name)
}

func catalogOf(rec metadata.Volume, by string) catalog.Volume {
	return catalog.Volume{Name: rec.Name, Options: rec.Options, CreatedAt: rec.CreatedAt, CreatedBy: by}
}
