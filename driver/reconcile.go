package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/metadata"
)

// Reconcile brings the mount table and the state directory in line with the
// state database. Call it once at start, before serving requests.
//
//   - Volumes with mount counts above 0 get their bind mount back (dockerd
//     unmounts everything under a managed plugin on disable and at engine
//     restart, but not when the plugin crashes).
//   - Volumes without counts lose any leftover Mountpoint; so do entries of
//     the mount root that are no volume's.
//   - Mount counts of volumes without a record are dropped.
//   - Data directories without a record are kept and logged: data is never
//     deleted here. Records whose data directory is gone are marked
//     LocalMissing; the next Mount restores the store's head snapshot.
//   - Phases left by a stop in the middle of a transition are corrected
//     (see driver/doc.go); what needs the store (resuming leases, final
//     snapshots) is done by Connect once the store is reachable.
//   - Leftovers of removals (trash/) are deleted in the background.
//
// Counts of an earlier boot, and counts of Mounts never answered, are
// dropped first (settleCounts, driver/answers.go). Other counts for mount
// IDs that dockerd will never unmount (dockerd killed with containers
// running) cannot be told apart from live ones and are kept.
//
// Only state-database errors are returned; a volume that cannot be fixed is
// logged and left for its next Mount to report.
func (d *Driver) Reconcile(ctx context.Context) error {
	d.purgeTrash()
	if err := d.settleCounts(ctx); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}

	vols, err := d.db.Volumes(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	all, err := d.db.AllMounts(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	known := map[string]bool{}
	for _, v := range vols {
		known[v.Name] = true
		if err := d.reconcileVolume(ctx, v, all[v.Name]); err != nil {
			return err
		}
	}
	for name := range all {
		if !known[name] {
			d.log.WithField("volume", name).Warn("dropping mount counts of a volume without a record")
			if err := d.db.DeleteMounts(ctx, name); err != nil {
				return fmt.Errorf("reconcile: %w", err)
			}
		}
	}
	d.reconcileMountRoot(all)
	d.reportOrphanData(known)
	return nil
}

func (d *Driver) reconcileVolume(ctx context.Context, v metadata.Volume, mounts metadata.Mounts) error {
	log := d.log.WithField("volume", v.Name)
	_, statErr := os.Stat(d.dataDir(v.Name))
	exists := statErr == nil
	local, lastErr := v.Local, ""
	switch {
	case v.Local == metadata.LocalDiverged:
	case v.Local == metadata.LocalRestoring && v.Generation == 0:
		local = metadata.LocalAbsent // a pull was interrupted: the directory is as before
		if exists {
			local = metadata.LocalReady
		}
	case !exists && (v.Local == metadata.LocalReady || v.Local == metadata.LocalPresent || v.Local == metadata.LocalMounted || v.Local == metadata.LocalReleasing):
		local = metadata.LocalMissing
		lastErr = "the data directory " + d.dataDir(v.Name) + " was missing at start: the next Mount restores the store's head snapshot (unpublished changes are lost)"
		log.Error(lastErr)
	case v.Local == metadata.LocalMissing && exists, v.Local == metadata.LocalPresent:
		local = metadata.LocalReady
	case mounts.Total() == 0 && v.Local == metadata.LocalMounted:
		// Stopped between an unmount and recording it.
		local = metadata.LocalReady
		if v.Generation > 0 {
			local = metadata.LocalReleasing
		}
	}
	if local != v.Local || lastErr != "" {
		err := d.db.UpdateVolume(ctx, v.Name, func(r *metadata.Volume) error {
			r.Local = local
			if lastErr != "" {
				r.LastError, r.LastErrorAt, r.LocalSnapshot = lastErr, time.Now().UTC(), ""
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		v.Local = local
	}
	if mounts.Total() > 0 {
		if exists {
			if err := d.ensureBound(v); err != nil {
				log.WithError(err).Error("could not restore the bind mount of a mounted volume")
			}
		}
	} else if err := d.unbind(v.Name); err != nil {
		log.WithError(err).Warn("could not remove a leftover mountpoint")
	}
	if exists && v.SizeAt.IsZero() {
		d.measureLater(v.Name)
	}
	return nil
}

// reconcileMountRoot removes mountpoints that belong to no mounted volume.
func (d *Driver) reconcileMountRoot(mounted map[string]metadata.Mounts) {
	entries, err := os.ReadDir(d.mountRoot)
	if err != nil {
		d.log.WithError(err).Warn("could not list the mount root")
		return
	}
	for _, e := range entries {
		if ValidateName(e.Name()) != nil || mounted[e.Name()].Total() > 0 {
			continue
		}
		if err := d.unbind(e.Name()); err != nil {
			d.log.WithField("path", d.mountpoint(e.Name())).WithError(err).Warn("could not remove a stale mountpoint")
		}
	}
}

func (d *Driver) reportOrphanData(known map[string]bool) {
	entries, err := os.ReadDir(filepath.Join(d.stateDir, "volumes"))
	if err != nil {
		d.log.WithError(err).Warn("could not list the volumes directory")
		return
	}
	for _, e := range entries {
		if !known[e.Name()] {
			d.log.WithField("path", d.volumeDir(e.Name())).Warn("data without a volume record: kept; docker volume create with this name adopts it")
		}
	}
}

func (d *Driver) purgeTrash() {
	dir := filepath.Join(d.stateDir, "trash")
	entries, err := os.ReadDir(dir)
	if err != nil {
		d.log.WithError(err).Warn("could not list removed volumes")
		return
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		d.goBackground(func(context.Context) { d.removeTrash(path) })
	}
}
