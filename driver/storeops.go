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
	"github.com/portvol/portvol/transfer"
)

// createInStore creates volume name's record in the store, first clearing
// a removed volume of that name (finishing its move to the trash and
// reviving its head record, so generations keep rising). It returns the
// record in the store and whether this call created it. See CreateRecord
// for why the name's head record is claimed first.
func (d *Driver) createInStore(ctx context.Context, b *Backend, name string, opts map[string]string, at time.Time, by string) (catalog.Volume, bool, error) {
	cv, created, err := createRecord(ctx, b.Store, b.Leases, catalog.Volume{Name: name, Options: opts, CreatedAt: at, CreatedBy: by}, func() error {
		return d.finishRemoval(ctx, b, name)
	})
	d.view.invalidate(name)
	return cv, created, err
}

// CreateRecord writes volume v's record (volumes/<name>/volume.json)
// unless the volume exists, as catalog.Create, after claiming the name's
// head record; a removed name fails with lease.ErrRemoved (bringing it
// back is the plugin's). Everything that creates volumes uses it.
//
// Why the claim: the volume record and the head record are two objects,
// and an undelete writes them in the other order — first the head record
// (a tombstone, or a missing record, becomes released with the removed
// volume's head snapshot), then the record. A Create that wrote only the
// record could slip in between and make a new volume whose head is the
// removed volume's data. So a Create writes the record only once the head
// record says the name is free for a new volume: released or held with no
// head (made by its own conditional write if need be: Revive of a
// tombstone, Claim of a missing record). An undelete's conditional write
// needs a tombstone or no record, so of the two one fails; a head record
// with a head but no volume record is an undelete under way, and the
// Create is refused until it is done.
func CreateRecord(ctx context.Context, store transfer.ObjectStore, leases *lease.Manager, v catalog.Volume) (catalog.Volume, bool, error) {
	return createRecord(ctx, store, leases, v, nil)
}

// createRecord is CreateRecord; clear, if set, moves a removed volume's
// objects to the trash before its tombstone is revived.
func createRecord(ctx context.Context, store transfer.ObjectStore, leases *lease.Manager, v catalog.Volume, clear func() error) (catalog.Volume, bool, error) {
	name := v.Name
	if err := claimName(ctx, store, leases, name, clear); err != nil {
		return catalog.Volume{}, false, err
	}
	cv, created, err := catalog.Create(ctx, store, v)
	if err != nil {
		if errors.Is(err, catalog.ErrCorrupt) {
			return cv, false, fmt.Errorf("volume %q: %w; inspect volumes/%s/volume.json in the store", name, err, name)
		}
		return cv, false, errUnavailable(name, err)
	}
	return cv, created, nil
}

// claimName returns once name's head record lets a new volume record be
// written (see CreateRecord), or the volume record exists already.
func claimName(ctx context.Context, store transfer.ObjectStore, leases *lease.Manager, name string, clear func() error) error {
	for range 4 {
		o, err := leases.Inspect(ctx, name)
		if err != nil {
			return errUnavailable(name, err)
		}
		_, verr := catalog.Get(ctx, store, name)
		record := verr == nil
		if verr != nil && !errors.Is(verr, catalog.ErrNotFound) {
			if errors.Is(verr, catalog.ErrCorrupt) {
				return fmt.Errorf("volume %q: %w; inspect volumes/%s/volume.json in the store", name, verr, name)
			}
			return errUnavailable(name, verr)
		}
		r := o.Record
		switch {
		case o.Exists && r.State == lease.Removed:
			if clear == nil {
				return fmt.Errorf("volume %q was removed (by host %q): %w", name, r.Owner, lease.ErrRemoved)
			}
			if err := clear(); err != nil {
				return err
			}
			if err := leases.Revive(ctx, name); err != nil {
				// Another host may have revived it (or undeleted it) first:
				// look again.
				continue
			}
		case record:
			return nil // exists: catalog.Create returns it
		case !o.Exists:
			if err := leases.Claim(ctx, name); err != nil {
				return errUnavailable(name, err)
			}
		case r.Head != "":
			return errorf(ErrBusy, "volume %q is being undeleted (its head record names snapshot %s of the removed volume, but its volume record is not back yet): retry in a moment; if an undelete was interrupted, run portvol undelete %s again to finish it", name, r.Head, name)
		default:
			return nil // released or held with no head: free for a new volume
		}
	}
	return errorf(ErrBusy, "volume %q: its head record kept changing while creating it; retry", name)
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
