package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
	"github.com/portvol/portvol/snapshot"
)

// baseHelp is the --base flag's help.
const baseHelp = `keep a read-only btrfs snapshot of SRC_DIR (a btrfs subvolume) at this path, ` +
	`on the same filesystem and outside SRC_DIR: the import reads a snapshot of SRC_DIR taken once it holds the lease ` +
	`(one instant, whatever is writing), and the next import with the same --base reads only what btrfs says changed since`

// baseLongHelp is the paragraph of import's help about --base.
const baseLongHelp = `

With --base PATH, SRC_DIR must be a btrfs subvolume (else import refuses):
import reads a read-only snapshot of it taken once it holds the lease, a
point-in-time copy of a directory in use, and keeps that snapshot at PATH
with a record (.NAME.portvol-base.json beside it) of the volume, store and
snapshot it was read for. The next import with the same --base, volume and
store reads only the extents btrfs reports changed since. When that cannot
be proven — no base yet, the base deleted or replaced, made for another
volume, store or subvolume, or the volume's head moved (another writer
published since) — import says so in one line and reads every file whose
stat changed, as without --base, and keeps its own snapshot as the new base.
PATH is replaced only once the new snapshot is published: a crash leaves the
old base or the new one, each with the record that says what it belongs to.
A PATH that exists must be a base an import kept (its record names it):
anything else there is refused, never replaced. One import at a time per PATH.`

// importBaseStep, if set (by tests), is called at each step of keeping
// the new base: "published" (before the swap) and "swapped" (before the
// record is renamed).
var importBaseStep func(step string)

// baseRecord says what the snapshot at --base is the base of: it is used
// only while everything in it still holds.
type baseRecord struct {
	Store    string `json:"store_id"`
	Volume   string `json:"volume"`
	Snapshot string `json:"snapshot"` // the snapshot read from the base
	Source   string `json:"source_uuid"`
	// The base subvolume itself: its UUID and creation and last-change
	// transactions (a base deleted and made again, or made writable and
	// changed, differs in one of them).
	Base       string `json:"base_uuid"`
	Generation uint64 `json:"generation"`
	Changed    uint64 `json:"changed_generation"`
}

// importBase is import --base for one run.
type importBase struct {
	path, src, storeID, volume string
	srcInfo                    btrfs.SubvolumeInfo
	notify                     func(string)

	tmp     string // the snapshot being read; "" once kept or deleted
	tmpInfo btrfs.SubvolumeInfo
	parent  string // the head it was read for
	why     string // why the base was not used ("" when it was)
	lock    int    // the lock file's descriptor, -1 when not held
}

// fallback is why the base was not used ("" when it was, or without
// --base).
func (b *importBase) fallback() string {
	if b == nil {
		return ""
	}
	return b.why
}

func (b *importBase) record() string {
	return filepath.Join(filepath.Dir(b.path), "."+filepath.Base(b.path)+".portvol-base.json")
}

func (b *importBase) tmpPrefix() string { return "." + filepath.Base(b.path) + ".portvol-new-" }

// openImportBase checks --base before anything is taken: SRC_DIR must be
// a subvolume, path outside it, and a path that exists must be a
// read-only snapshot of it (portvol replaces it, so it must be one of
// its own).
func openImportBase(path, src, statCache, storeID, volume string, notify func(string)) (*importBase, error) {
	path, err := absDir("--base", path)
	if err != nil {
		return nil, err
	}
	si, err := btrfs.Inspect(src)
	if err != nil {
		if errors.Is(err, localcopy.ErrInvalid) {
			return nil, usageError{fmt.Errorf("--base needs SRC_DIR %s to be a btrfs subvolume (btrfs subvolume create, then move the data in), to read it at one instant; import without --base to read it file by file", src)}
		}
		return nil, fmt.Errorf("--base: %w", err)
	}
	for _, p := range []struct{ flag, path string }{{"--base", path}, {"--stat-cache", statCache}} {
		if rel, err := filepath.Rel(src, p.path); p.path != "" && err == nil && filepath.IsLocal(rel) || p.path == src {
			return nil, usageError{fmt.Errorf("%s %s is inside SRC_DIR %s: give a path outside it", p.flag, p.path, src)}
		}
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return nil, usageError{fmt.Errorf("--base %s: its directory %s does not exist", path, filepath.Dir(path))}
	}
	b := &importBase{path: path, src: src, storeID: storeID, volume: volume, srcInfo: si, notify: notify, lock: -1}
	if _, err := os.Lstat(path); err == nil {
		// Only a base an import kept (a record names it) is replaced: a
		// snapshot of the user's own at that path is left alone.
		bi, err := btrfs.Inspect(path)
		if _, ours := b.loadRecord(bi); err != nil || !bi.ReadOnly || bi.ParentUUID != si.UUID || !ours {
			return nil, usageError{fmt.Errorf("--base %s exists and is not a base that import kept for SRC_DIR %s (a read-only snapshot of it, named by %s): import replaces the base after each run, so give a path of its own", path, src, b.record())}
		}
	}
	if err := b.takeLock(); err != nil {
		return nil, err
	}
	b.removeLeftovers()
	return b, nil
}

// takeLock holds the base's lock file for the run: two imports with the
// same --base would replace each other's base and delete each other's
// snapshot.
func (b *importBase) takeLock() error {
	p := filepath.Join(filepath.Dir(b.path), "."+filepath.Base(b.path)+".portvol-base.lock")
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("--base: lock file: %w", &os.PathError{Op: "open", Path: p, Err: err})
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("--base %s is in use by another import on this host: wait for it, or give each import a base of its own", b.path)
		}
		return fmt.Errorf("--base: lock file %s: %w", p, err)
	}
	b.lock = fd
	return nil
}

// close deletes a snapshot not kept (see finish) and gives the lock back.
func (b *importBase) close() {
	if b == nil {
		return
	}
	b.finish(false, "")
	if b.lock >= 0 {
		unix.Close(b.lock)
		b.lock = -1
	}
}

// removeLeftovers deletes the snapshots of SRC_DIR that a killed import
// left beside the base.
func (b *importBase) removeLeftovers() {
	es, _ := os.ReadDir(filepath.Dir(b.path))
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), b.tmpPrefix()) {
			continue
		}
		p := filepath.Join(filepath.Dir(b.path), e.Name())
		if i, err := btrfs.Inspect(p); err == nil && i.ParentUUID == b.srcInfo.UUID {
			_ = btrfs.DeleteSubvolume(p)
		}
	}
}

// freeze takes the read-only snapshot of SRC_DIR this import reads, and
// returns how to create the volume's snapshot from it: with the changes
// since the base when the base is proven to be what parent, the volume's
// head, was read from; else (said in one line) without.
func (b *importBase) freeze(ctx context.Context, repo *snapshot.Repo, parent string) (func(context.Context, snapshot.CreateOptions) (*snapshot.Manifest, error), error) {
	b.parent = parent
	taken := time.Now()
	tmp := filepath.Join(filepath.Dir(b.path), b.tmpPrefix()+localcopy.RandomSuffix())
	if err := btrfs.Snapshot(b.src, tmp, true); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return nil, fmt.Errorf("--base %s is not on the btrfs filesystem of SRC_DIR %s: give a path on it", b.path, b.src)
		}
		return nil, fmt.Errorf("--base: snapshotting SRC_DIR %s: %w", b.src, err)
	}
	b.tmp = tmp
	info, err := btrfs.Inspect(tmp)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	b.tmpInfo = info
	var changes *btrfs.ChangeSource
	why := b.unusable(parent)
	if why == "" {
		if changes, err = btrfs.NewChangeSource(ctx, b.volume, b.path, tmp); err != nil {
			why = err.Error()
		}
	}
	b.why = why
	if why != "" {
		b.notify(fmt.Sprintf("--base: %s; this import reads every file whose stat changed, and keeps its snapshot as the new base", why))
	}
	return func(ctx context.Context, co snapshot.CreateOptions) (*snapshot.Manifest, error) {
		co.Frozen = taken
		if changes != nil {
			defer changes.Close()
			co.Changes = changes
		}
		return repo.Create(ctx, b.volume, tmp, co)
	}, nil
}

// unusable says why the base cannot be trusted as the snapshot parent
// was read from ("" when it can).
func (b *importBase) unusable(parent string) string {
	bi, err := btrfs.Inspect(b.path)
	if err != nil {
		if _, serr := os.Lstat(b.path); errors.Is(serr, os.ErrNotExist) {
			if _, rerr := os.Stat(b.record()); rerr == nil {
				return fmt.Sprintf("the base %s is gone", b.path)
			}
			return fmt.Sprintf("no base at %s yet", b.path)
		}
		return fmt.Sprintf("the base %s: %s", b.path, err)
	}
	rec, ok := b.loadRecord(bi)
	switch {
	case !ok:
		return fmt.Sprintf("the base %s has no record of what it was read for (replaced, or an import was killed before keeping it)", b.path)
	case rec.Volume != b.volume || rec.Store != b.storeID:
		return fmt.Sprintf("the base %s belongs to volume %q of store %s, not this one", b.path, rec.Volume, rec.Store)
	case rec.Source != b.srcInfo.UUID || bi.ParentUUID != b.srcInfo.UUID:
		return fmt.Sprintf("the base %s is a snapshot of another subvolume than SRC_DIR", b.path)
	case !bi.ReadOnly || bi.Generation != rec.Generation || bi.Changed != rec.Changed:
		return fmt.Sprintf("the base %s was changed since it was kept", b.path)
	case parent == "":
		return "the volume has no snapshot yet"
	case rec.Snapshot != parent:
		return fmt.Sprintf("the volume's head is %s, not %s that the base was read for (another writer published since)", parent, rec.Snapshot)
	case bi.Generation >= b.tmpInfo.Generation:
		return fmt.Sprintf("the base %s is not older than this import's snapshot", b.path)
	}
	return ""
}

// loadRecord reads the record that names base bi: the record, or the
// next one when an import was stopped between the swap and the rename.
func (b *importBase) loadRecord(bi btrfs.SubvolumeInfo) (baseRecord, bool) {
	for _, p := range []string{b.record(), b.record() + ".next"} {
		var r baseRecord
		data, err := os.ReadFile(p)
		if err == nil && json.Unmarshal(data, &r) == nil && r.Base == bi.UUID {
			return r, true
		}
	}
	return baseRecord{}, false
}

// finish keeps the snapshot read as the base when id, read from it, is
// now the volume's head and was not before (published settled true);
// otherwise it deletes it and leaves the old base. The order — the next
// record, the swap, the record — leaves at every point a base whose
// record names it, or one no record names (then unused).
func (b *importBase) finish(published bool, id string) {
	if b == nil || b.tmp == "" {
		return
	}
	tmp := b.tmp
	b.tmp = ""
	if !published || id == "" || id == b.parent {
		b.drop(tmp)
		return
	}
	rec := baseRecord{Store: b.storeID, Volume: b.volume, Snapshot: id, Source: b.srcInfo.UUID,
		Base: b.tmpInfo.UUID, Generation: b.tmpInfo.Generation, Changed: b.tmpInfo.Changed}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = durable.WriteFile(b.record()+".next", append(data, '\n'), 0o644)
	}
	if importBaseStep != nil {
		importBaseStep("published")
	}
	if err == nil {
		err = localcopy.SwapIn(tmp, b.path)
	}
	if err != nil {
		b.drop(tmp)
		b.notify(fmt.Sprintf("--base: could not keep this import's snapshot at %s (%s); the next import reads every file whose stat changed", b.path, err))
		return
	}
	if importBaseStep != nil {
		importBaseStep("swapped")
	}
	if err := os.Rename(b.record()+".next", b.record()); err == nil {
		_ = durable.SyncDir(filepath.Dir(b.path))
	}
	b.drop(tmp) // the old base, after the exchange (nothing when there was none)
}

// drop deletes the snapshot at p (only one of SRC_DIR).
func (b *importBase) drop(p string) {
	if i, err := btrfs.Inspect(p); err == nil && i.ParentUUID == b.srcInfo.UUID {
		if err := btrfs.DeleteSubvolume(p); err != nil {
			b.notify(fmt.Sprintf("--base: could not delete the snapshot %s (%s); the next import with this --base deletes it", p, err))
		}
	}
}
