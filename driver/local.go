package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portvol/portvol/catalog"
	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/metadata"
)

// incarnation identifies one creation of a volume name in the store.
func incarnation(v catalog.Volume) string {
	return v.CreatedAt.UTC().Format(time.RFC3339Nano) + " " + v.CreatedBy
}

// localRecord returns name's record on this host, under the volume lock,
// creating it from the store's record if this host has none, and
// replacing one that belongs to an earlier volume of the same name.
func (d *Driver) localRecord(ctx context.Context, b *Backend, name string) (metadata.Volume, info, error) {
	in, err := d.readInfo(ctx, b, name)
	if err != nil {
		return metadata.Volume{}, info{}, errUnavailable(name, err)
	}
	rec, err := d.db.Volume(ctx, name)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return rec, in, err
	}
	if err == nil && rec.Incarnation == "" && !in.Exists() {
		if in, err = d.adoptLegacy(ctx, b, rec); err != nil {
			return rec, in, err
		}
	}
	if !in.Exists() {
		return rec, in, errorf(ErrNotFound, "volume %q does not exist in the store (it was removed, or never created): create it with docker volume create", name)
	}
	if err == nil {
		inc := incarnation(in.Vol)
		switch {
		case rec.Incarnation == inc:
			if !maps.Equal(rec.Options, in.Vol.Options) {
				err = d.update(ctx, name, func(r *metadata.Volume) { r.Options = in.Vol.Options })
			}
			rec.Options = in.Vol.Options
			return rec, in, err
		case rec.Incarnation == "":
			// Written by a single-host portvol: its data joins the store's
			// volume and is published at the next unmount.
			err = d.update(ctx, name, func(r *metadata.Volume) {
				r.Incarnation, r.Options, r.Dirty = inc, in.Vol.Options, true
				if r.Local == metadata.LocalPresent {
					r.Local = metadata.LocalReady
				}
			})
			rec, _ = d.db.Volume(ctx, name)
			return rec, in, err
		}
		if busy, err := d.inUse(ctx, name); err != nil || busy {
			if err == nil {
				err = errorf(ErrBusy, "volume %q: this host's copy belongs to an earlier volume of this name and is still in use here (mounted, held or uploading): unmount it first", name)
			}
			return rec, in, err
		}
		if err := d.retire(ctx, rec, "it belongs to an earlier volume of this name"); err != nil {
			return rec, in, err
		}
	}
	rec, err = d.remember(ctx, in.Vol, false)
	return rec, in, err
}

// remember creates this host's record of store volume v. created says this
// host just created v: then an existing data directory without a record
// is adopted as the volume's content; otherwise it is moved aside.
func (d *Driver) remember(ctx context.Context, v catalog.Volume, created bool) (metadata.Volume, error) {
	name := v.Name
	rec := metadata.Volume{
		Name: name, Options: v.Options, CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy,
		Incarnation: incarnation(v), Local: metadata.LocalAbsent,
	}
	fs, err := d.existingCopy(ctx, name)
	if err != nil {
		return rec, fmt.Errorf("volume %q: %w", name, err)
	}
	c, err := d.localFor(name, fs)
	if err != nil {
		return rec, err
	}
	exists, err := c.Exists(ctx, name)
	if err != nil {
		return rec, fmt.Errorf("volume %q: %w", name, err)
	}
	switch {
	case exists && created:
		d.log.WithField("volume", name).Warn("a data directory without a record exists for this name: the new volume keeps its contents")
		rec.Local, rec.Dirty, rec.SizeAt, rec.Filesystem = metadata.LocalReady, true, time.Time{}, fs
		d.measureLater(name)
	case exists:
		aside, err := c.MoveAside(ctx, name, "orphan-"+time.Now().UTC().Format("20060102T150405Z"))
		if err != nil {
			return rec, fmt.Errorf("volume %q: %w", name, err)
		}
		d.log.WithField("volume", name).WithField("path", aside).Warn("a data directory without a record was moved aside: the volume's data comes from the store")
		rec.Aside = []string{d.relToState(aside)}
	case created:
		if rec.Filesystem, err = d.createCopy(ctx, name, v.Options); err != nil {
			return rec, err
		}
		rec.Local, rec.SizeAt = metadata.LocalReady, time.Now().UTC()
	}
	if err := d.db.CreateVolume(ctx, rec); err != nil {
		return rec, fmt.Errorf("volume %q: %w", name, err)
	}
	return rec, nil
}

// retire removes this host's record of a volume the store no longer has
// (or has anew), under the volume lock and with no mounts. Copies with
// unpublished changes, and copies moved aside earlier, are kept under
// <state-dir>/kept; a copy equal to a published snapshot is deleted.
func (d *Driver) retire(ctx context.Context, rec metadata.Volume, why string) error {
	name := rec.Name
	log := d.log.WithField("volume", name)
	if err := d.unbind(name); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
	keep := func(rel, label string) error {
		dst := filepath.Join(d.stateDir, "kept", name+"."+label+"."+stamp)
		err := os.Rename(filepath.Join(d.stateDir, rel), dst)
		switch {
		case errors.Is(err, unix.EXDEV):
			// In the btrfs pool: kept where it is.
			log.WithField("path", filepath.Join(d.stateDir, rel)).Warn("kept a copy of the volume's data (" + why + "): portvol import can turn it into a new volume")
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("volume %q: keep %s: %w", name, rel, err)
		case err == nil:
			log.WithField("path", dst).Warn("kept a copy of the volume's data (" + why + "): portvol import can turn it into a new volume")
		}
		return nil
	}
	for _, a := range keptAside(rec.Aside, d.volumeDir(name), d.relToState) {
		if err := keep(a, filepath.Base(a)); err != nil {
			return err
		}
	}
	c, cerr := d.localOf(rec)
	if cerr == nil {
		if ok, _ := c.Exists(ctx, name); ok && rec.Dirty {
			aside, err := c.MoveAside(ctx, name, "unpublished-"+stamp)
			if err != nil {
				return fmt.Errorf("volume %q: keep its unpublished copy: %w", name, err)
			}
			if err := keep(d.relToState(aside), "unpublished"); err != nil {
				return err
			}
		}
		if c != localcopy.Copies(d.dirs) {
			// Subvolumes are deleted here (quick); directories go with the
			// volume's directory to the trash below.
			if err := c.Remove(ctx, name); err != nil {
				return fmt.Errorf("volume %q: %w", name, err)
			}
		}
	}
	// The rest goes to the trash first: after a crash between the two steps
	// the record is missing rather than the data reappearing.
	trash := filepath.Join(d.stateDir, "trash", name+"."+stamp)
	if err := os.Rename(d.volumeDir(name), trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("volume %q: move data to %s: %w", name, trash, err)
	}
	if err := durable.SyncDir(filepath.Dir(trash)); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if err := d.db.DeleteVolume(ctx, name); err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return fmt.Errorf("volume %q: %w", name, err)
	}
	d.goBackground(func(context.Context) { d.removeTrash(trash) })
	d.volsMu.Lock()
	delete(d.vols, name)
	d.volsMu.Unlock()
	log.WithField("why", why).Info("forgot this host's copy of the volume")
	return nil
}

// keptAside is every copy moved aside in a volume's directory: the ones
// its record lists, and any other whose name says it was moved aside (a
// process killed between moving a copy aside and recording it leaves one
// the record does not list; it must not go to the trash with the rest).
func keptAside(listed []string, volumeDir string, rel func(string) string) []string {
	out := append([]string(nil), listed...)
	entries, err := os.ReadDir(volumeDir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || !isAsideName(n) {
			continue
		}
		r := rel(filepath.Join(volumeDir, n))
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// isAsideName reports whether a name in a volume's directory is a copy
// moved aside (fenced-*, diverged-*, orphan-*, unpublished-*).
func isAsideName(n string) bool {
	for _, p := range []string{"fenced-", "diverged-", "orphan-", "unpublished-"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// forgetLater retires this host's record of a volume the store says does
// not exist, in the background, if nothing here uses it.
func (d *Driver) forgetLater(name string) {
	d.goBackground(func(ctx context.Context) {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		unlock, err := d.locks.lock(lctx, name)
		cancel()
		if err != nil {
			return // busy: the next Get tries again
		}
		defer unlock()
		b, err := d.store(ctx)
		if err != nil {
			return
		}
		in, err := d.readInfo(ctx, b, name)
		if err != nil || in.Exists() {
			return
		}
		rec, err := d.db.Volume(ctx, name)
		if err != nil || rec.Incarnation == "" {
			return // legacy records join the store instead (recovery)
		}
		mounts, err := d.db.Mounts(ctx, name)
		v := d.state(name)
		if err != nil || mounts.Total() > 0 || v.holding() != nil || v.currentJob() != nil {
			return
		}
		if err := d.retire(ctx, rec, "the volume was removed from the store"); err != nil {
			d.log.WithField("volume", name).WithError(err).Warn("could not forget a removed volume")
		}
	})
}
