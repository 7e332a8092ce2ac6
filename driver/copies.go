package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// Where a volume's data lives on this host is localcopy's business: the
// driver keeps new copies in d.copies (btrfs subvolumes or directories,
// as --volume-fs chose) and copies made before in d.dirs (directories),
// and records per volume which one holds it (metadata.Volume.Filesystem).
// Directory copies move into a subvolume at their next restore, or by
// Convert.

// localFor is the implementation holding a copy recorded as fs.
func (d *Driver) localFor(name, fs string) (localcopy.Copies, error) {
	switch fs {
	case "", localcopy.FilesystemDirectory:
		return d.dirs, nil
	case d.copies.Filesystem():
		return d.copies, nil
	}
	return nil, fmt.Errorf("volume %q: its copy on this host is a %s subvolume, but this portvol keeps volumes in %s (--volume-fs): start it with --volume-fs %s (or auto) to use this copy", name, fs, kindOf(d.copies), fs)
}

// kindOf says what c keeps copies in, for messages.
func kindOf(c localcopy.Copies) string {
	if c.Filesystem() == localcopy.FilesystemDirectory {
		return "directories"
	}
	return c.Filesystem() + " subvolumes"
}

// localOf is the implementation holding rec's copy.
func (d *Driver) localOf(rec metadata.Volume) (localcopy.Copies, error) {
	return d.localFor(rec.Name, rec.Filesystem)
}

// fsName is what status shows for a record's filesystem.
func fsName(rec metadata.Volume) string {
	if rec.Filesystem == "" {
		return localcopy.FilesystemDirectory
	}
	return rec.Filesystem
}

// dataDir is the live directory of name's copy (whether or not it
// exists), wherever its record says it lives.
func (d *Driver) dataDir(name string) string {
	fs := ""
	if rec, err := d.db.Volume(context.Background(), name); err == nil {
		fs = rec.Filesystem
	}
	c, err := d.localFor(name, fs)
	if err != nil {
		c = d.dirs
	}
	return c.Path(name)
}

// createOptions are the local copy settings of a volume with options
// opts in c: the size limit where c can enforce one, and nodatacow for
// subvolumes (database files are overwritten in place; frozen instants
// stay atomic: see localcopy/btrfs).
func createOptions(c localcopy.Copies, opts map[string]string) localcopy.CreateOptions {
	var o localcopy.CreateOptions
	if c.Filesystem() == localcopy.FilesystemBtrfs {
		o.NoCOW = true
		o.SizeLimit = sizeLimit(opts)
	}
	return o
}

// createCopy makes an empty copy of volume name (options opts) in the
// implementation new copies go to, and returns that implementation's
// filesystem name for the record. A copy already there is kept.
func (d *Driver) createCopy(ctx context.Context, name string, opts map[string]string) (string, error) {
	c := d.copies
	err := c.Create(ctx, name, createOptions(c, opts))
	if err != nil && !errors.Is(err, localcopy.ErrExists) {
		return "", fmt.Errorf("volume %q: creating its local copy: %w", name, err)
	}
	return c.Filesystem(), nil
}

// existingCopy says which implementation holds a copy of name that has
// no record ("" if none does).
func (d *Driver) existingCopy(ctx context.Context, name string) (string, error) {
	for _, c := range []localcopy.Copies{d.copies, d.dirs} {
		if c != localcopy.Copies(d.dirs) && c.Path(name) == d.dirs.Path(name) {
			// Subvolumes in a btrfs state directory share the directories'
			// layout: a copy found there without a record is taken for a
			// directory (which works on any filesystem); its next restore,
			// or Convert, makes it a subvolume.
			continue
		}
		ok, err := c.Exists(ctx, name)
		if err != nil {
			return "", err
		}
		if ok {
			if c.Filesystem() == localcopy.FilesystemDirectory {
				return "", nil
			}
			return c.Filesystem(), nil
		}
	}
	return "", nil
}

// createSnapshot snapshots name's copy into the store: from a frozen
// instant when its filesystem has them (btrfs: one instant of the whole
// volume, whatever the write load), else from the live directory, file by
// file. The instant read is kept as the volume's base (see Base) when the
// snapshot was made; the caller records it with recordBase once the
// snapshot is published.
func (d *Driver) createSnapshot(ctx context.Context, b *Backend, name string, opts snapshot.CreateOptions) (*snapshot.Manifest, localcopy.Frozen, error) {
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return nil, localcopy.Frozen{}, err
	}
	c, err := d.localOf(rec)
	if err != nil {
		return nil, localcopy.Frozen{}, err
	}
	t0 := time.Now()
	f, err := c.Freeze(ctx, name)
	if err != nil {
		return nil, localcopy.Frozen{}, fmt.Errorf("volume %q: %w", name, err)
	}
	tFrozen := time.Now()
	// The live directory may change while it is read: a file that
	// vanishes is left out, one replaced is read anew, and the snapshot
	// completes (file by file, as the status says).
	opts.Live = !f.PointInTime()
	if f.PointInTime() {
		// What the stat cache records as when the files were seen: the
		// instant's moment, not Create's start, so that a file written
		// again after the freeze within its timestamps' granularity is
		// racy for the next snapshot, not taken as unchanged.
		opts.Frozen = t0
	}
	if src, closer := d.changeSource(ctx, c, name, f, opts.Parent); src != nil {
		defer closer.Close()
		opts.Changes = src
	}
	tChanges := time.Now()
	m, err := b.Snapshots.Create(ctx, name, f.Path, opts)
	if err != nil && opts.Parent != "" && errors.Is(err, snapshot.ErrNotFound) {
		// The head the lease names is not in the store (its manifest is
		// gone): retrying would fail for ever while this host renews the
		// lease, and nobody else can mount the volume. The copy is whole,
		// so snapshot it without a parent (reading every file) instead.
		if _, serr := b.Store.Stat(ctx, snapshot.ManifestKey(name, opts.Parent)); errors.Is(serr, transfer.ErrNotExist) {
			d.log.WithField("volume", name).WithError(err).Warnf("parent snapshot %s is not in the store: taking a full snapshot without a parent", opts.Parent)
			opts.Parent, opts.Changes = "", nil
			m, err = b.Snapshots.Create(ctx, name, f.Path, opts)
		}
	}
	if err != nil {
		if rerr := c.Release(context.WithoutCancel(ctx), f); rerr != nil {
			d.log.WithField("volume", name).WithError(rerr).Warn("could not delete a frozen instant; the next snapshot or restore removes it")
		}
		return nil, localcopy.Frozen{}, err
	}
	d.warnCache(name, m.CacheErr)
	tCreated := time.Now()
	if f.PointInTime() {
		if err := c.KeepBase(context.WithoutCancel(ctx), f); err != nil {
			d.log.WithField("volume", name).WithError(err).Warn("could not keep the frozen instant as the base of the next snapshot")
			_ = c.Release(context.WithoutCancel(ctx), f)
			f = localcopy.Frozen{}
		}
	}
	// Where a snapshot's time went, for whoever reads the debug log (the
	// handoff bench prints it in its timeline).
	d.log.WithField("volume", name).WithField("phases", fmt.Sprintf("freeze %v, change search %v, read and upload %v, keep base %v",
		tFrozen.Sub(t0).Round(time.Millisecond), tChanges.Sub(tFrozen).Round(time.Millisecond),
		tCreated.Sub(tChanges).Round(time.Millisecond), time.Since(tCreated).Round(time.Millisecond))).Debug("snapshot made")
	return m, f, nil
}

// changeSourcer is implemented by copies that find what changed between
// two instants from the filesystem's own records (localcopy/btrfs: extent
// generations and locations).
type changeSourcer interface {
	SnapshotChanges(ctx context.Context, base, cur localcopy.Frozen) (snapshot.ChangeSource, io.Closer, error)
}

// changeSource returns the change source for a snapshot of instant cur
// whose parent is parent, when c finds changes and the kept base is the
// instant parent was read from (see Base); nil otherwise, and then the
// snapshot compares stats as without one. A source that cannot be made is
// logged and not used: the snapshot still completes, reading more.
func (d *Driver) changeSource(ctx context.Context, c localcopy.Copies, name string, cur localcopy.Frozen, parent string) (snapshot.ChangeSource, io.Closer) {
	cs, ok := c.(changeSourcer)
	if !ok || !cur.PointInTime() || parent == "" {
		return nil, nil
	}
	base, id, ok, err := d.Base(ctx, name)
	if err != nil || !ok || id != parent || base.Generation >= cur.Generation {
		return nil, nil
	}
	src, closer, err := cs.SnapshotChanges(ctx, base, cur)
	if err != nil {
		d.log.WithField("volume", name).WithError(err).Warn("could not find the changes since the base instant; this snapshot reads every file that changed whole")
		return nil, nil
	}
	return src, closer
}

// recordBase records in r that f, the instant snapshot id was read from,
// is the base kept for the next snapshot.
func recordBase(r *metadata.Volume, id string, f localcopy.Frozen) {
	if !f.PointInTime() {
		return
	}
	r.BaseSnapshot, r.BaseInstant, r.BaseGeneration = id, f.ID, f.Generation
}

// Base returns the kept instant of the last snapshot published from
// volume name's copy on this host, and that snapshot's id, when both the
// copy and the record agree on it (ok false otherwise: a snapshot must
// then read everything). Change discovery (localcopy.ChangeFinder)
// compares the next instant with it.
func (d *Driver) Base(ctx context.Context, name string) (f localcopy.Frozen, snapshotID string, ok bool, err error) {
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return f, "", false, err
	}
	c, err := d.localOf(rec)
	if err != nil || rec.BaseSnapshot == "" {
		return f, "", false, err
	}
	f, ok, err = c.Base(ctx, name)
	if err != nil || !ok || f.ID != rec.BaseInstant || f.Generation != rec.BaseGeneration {
		return localcopy.Frozen{}, "", false, err
	}
	return f, rec.BaseSnapshot, true, nil
}

// dropBase forgets name's base (the copy it belongs to is being replaced
// or moved aside).
func (d *Driver) dropBase(ctx context.Context, c localcopy.Copies, name string) {
	if err := c.DropBase(context.WithoutCancel(ctx), name); err != nil {
		d.log.WithField("volume", name).WithError(err).Warn("could not drop the base instant")
	}
	_ = d.update(ctx, name, func(r *metadata.Volume) { r.BaseSnapshot, r.BaseInstant, r.BaseGeneration = "", "", 0 })
}

// dropOlderBases deletes the base instants KeepBase left (the one it
// replaced): not while a snapshot is being published, because that can
// take a while on a large volume. A failure only leaves the instant to the
// next KeepBase.
func (d *Driver) dropOlderBases(ctx context.Context, name string) {
	rec, err := d.db.Volume(ctx, name)
	if err != nil {
		return
	}
	c, err := d.localOf(rec)
	if err != nil {
		return
	}
	if err := c.DropOlderBases(context.WithoutCancel(ctx), name); err != nil {
		d.log.WithField("volume", name).WithError(err).Warn("could not delete an earlier base instant; the next snapshot tries again")
	}
}

// relToState is p relative to the state directory when it is inside it.
func (d *Driver) relToState(p string) string {
	if rel, err := filepath.Rel(d.stateDir, p); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return p
}

// ConvertResult is what a convert did.
type ConvertResult struct {
	Volume     string `json:"volume"`
	Filesystem string `json:"filesystem"`
	Message    string `json:"message"`
}

// Convert moves volume name's directory copy on this host into a
// subvolume (the implementation new copies go to), keeping owners,
// modes, times, extended attributes, hard links and holes. Refused while
// the volume is mounted here or a restore or upload runs for it; a copy
// that is a subvolume already is left as it is.
func (d *Driver) Convert(ctx context.Context, name string) (ConvertResult, error) {
	res := ConvertResult{Volume: name}
	if err := ValidateName(name); err != nil {
		return res, err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	rec, err := d.db.Volume(ctx, name)
	if errors.Is(err, metadata.ErrNotFound) {
		return res, errorf(ErrNotFound, "volume %q has no copy on this host: nothing to convert", name)
	} else if err != nil {
		return res, err
	}
	res.Filesystem = fsName(rec)
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return res, err
	}
	v := d.state(name)
	switch {
	case mounts.Total() > 0:
		return res, errorf(ErrInUse, "volume %q is mounted on this host (%d time(s)): stop the containers that use it, then convert", name, mounts.Total())
	case v.currentJob() != nil:
		return res, errorf(ErrBusy, "volume %q: a restore or its final snapshot is running; convert once it is done", name)
	}
	conv, ok := d.copies.(localcopy.Converter)
	if !ok {
		return res, errorf(ErrInvalid, "volume %q: this portvol keeps volumes in %s (--volume-fs): start it with --volume-fs btrfs to convert volumes into subvolumes", name, kindOf(d.copies))
	}
	if rec.Filesystem == d.copies.Filesystem() {
		res.Message = fmt.Sprintf("volume %s is a %s subvolume already", name, rec.Filesystem)
		return res, nil
	}
	from, err := d.localOf(rec)
	if err != nil {
		return res, err
	}
	if ok, err := from.Exists(ctx, name); err != nil {
		return res, err
	} else if !ok {
		// No copy here: the next restore makes a subvolume anyway.
		if err := d.update(ctx, name, func(r *metadata.Volume) { r.Filesystem = d.copies.Filesystem() }); err != nil {
			return res, err
		}
		res.Filesystem, res.Message = d.copies.Filesystem(), fmt.Sprintf("volume %s has no copy on this host: its next restore makes a %s subvolume", name, d.copies.Filesystem())
		return res, nil
	}
	if err := conv.Convert(ctx, name, from.Path(name)); err != nil {
		return res, fmt.Errorf("volume %q: converting its copy: %w", name, err)
	}
	if err := d.update(ctx, name, func(r *metadata.Volume) {
		r.Filesystem, r.BaseSnapshot, r.BaseInstant, r.BaseGeneration = d.copies.Filesystem(), "", "", 0
	}); err != nil {
		return res, err
	}
	d.measureLater(name)
	res.Filesystem = d.copies.Filesystem()
	res.Message = fmt.Sprintf("volume %s now lives in a %s subvolume on this host: its periodic snapshots are %s", name, res.Filesystem, d.copies.Consistency())
	d.log.WithField("volume", name).Info("converted the volume's copy into a subvolume")
	return res, nil
}
