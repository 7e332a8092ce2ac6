package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// UndeleteResult is what an undelete did.
type UndeleteResult struct {
	Volume    string    `json:"volume"`
	Head      string    `json:"head"` // the snapshot the next Mount restores
	RemovedAt time.Time `json:"removed_at"`
	Message   string    `json:"message"`
}

// Undelete brings volume name back from the store's trash (its newest
// entry): its record, snapshots and head. It fails if the name exists.
func (d *Driver) Undelete(ctx context.Context, name string) (UndeleteResult, error) {
	res := UndeleteResult{Volume: name}
	b, unlock, err := d.lockWithStore(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	in, err := d.readInfo(ctx, b, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	if in.Exists() {
		return res, errorf(ErrConflict, "volume %q exists: nothing to undelete (remove it first to bring back an older one)", name)
	}
	if in.Removed {
		if err := d.finishRemoval(ctx, b, name); err != nil {
			return res, err
		}
	}
	entries, err := catalog.Trash(ctx, b.Store, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	if len(entries) == 0 {
		return res, errorf(ErrNotFound, "volume %q is not in the trash (removed volumes are kept for %s)", name, d.trashRetention)
	}
	e := entries[len(entries)-1]
	var head string
	var headGen uint64
	data, _, err := b.Store.Load(ctx, catalog.TrashCopyKey(name, e.ID, lease.HeadKey(name)), lease.MaxRecordSize)
	if err == nil {
		r, derr := lease.Decode(data)
		if derr != nil {
			return res, fmt.Errorf("volume %q: the trash's copy of its head record: %w", name, derr)
		}
		head, headGen = r.Head, r.HeadGeneration
	}
	if err := checkTrashEntry(ctx, b, name, e, entries, head); err != nil {
		return res, err
	}
	if err := b.Leases.Undelete(ctx, name, head, headGen); err != nil {
		return res, err
	}
	if err := catalog.RestoreFromTrash(ctx, b.Store, name, e.ID); err != nil {
		return res, err
	}
	d.view.invalidate(name)
	res.Head, res.RemovedAt = head, e.Removed
	res.Message = fmt.Sprintf("volume %s (removed %s) is back", name, e.Removed.Format(time.RFC3339))
	if head != "" {
		res.Message += fmt.Sprintf("; its next Mount restores snapshot %s", head)
	}
	d.log.WithField("volume", name).Info("undeleted")
	return res, nil
}

// checkTrashEntry refuses an undelete from trash entry e whose volume
// record, or whose head snapshot's manifest, is neither in the entry nor
// back in place: publishing that head would make the volume's next release
// fail for ever on a parent snapshot that is not in the store.
func checkTrashEntry(ctx context.Context, b *Backend, name string, e catalog.TrashEntry, entries []catalog.TrashEntry, head string) error {
	var missing []string
	present := func(key string) (bool, error) {
		for _, k := range []string{catalog.TrashKey(name, e.ID, key), key} {
			_, err := b.Store.Stat(ctx, k)
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, transfer.ErrNotExist) {
				return false, err
			}
		}
		return false, nil
	}
	ok, err := present(catalog.Key(name))
	if err != nil {
		return errUnavailable(name, err)
	}
	if !ok {
		missing = append(missing, "its volume record")
	}
	if head != "" {
		ok, err := present(snapshot.ManifestKey(name, head))
		if err != nil {
			return errUnavailable(name, err)
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("its head snapshot %s", head))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var ids []string
	for _, x := range entries {
		ids = append(ids, fmt.Sprintf("%s (removed %s)", x.ID, x.Removed.Format(time.RFC3339Nano)))
	}
	return fmt.Errorf("volume %q: cannot undelete: its newest trash entry %s lacks %s (neither in the entry nor in the store), so the volume would come back pointing at data that is gone; the store's trash holds these entries of it: %s; inspect trash/%s/ in the store (each entry's copies/ holds the head record it was removed with) and restore the objects by hand, or create the volume anew",
		name, e.ID, strings.Join(missing, " and "), strings.Join(ids, ", "), name)
}
