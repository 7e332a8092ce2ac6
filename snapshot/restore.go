package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
)

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Previous is the snapshot dir currently holds, if the caller knows;
	// "" means: the one the stat cache names, if any. Chunks of that
	// snapshot still present in dir are copied locally (and verified)
	// instead of fetched.
	Previous string
	// StatCache is the local stat cache file (see CreateOptions).
	StatCache string
	// InPlace: dir holds exactly snapshot Previous (which must be set),
	// for example a writable btrfs snapshot of the copy Previous was
	// restored into; write only what differs, in place, instead of
	// building a new tree. Not atomic by itself (see doc.go, "Restore in
	// place"): on an error dir holds a mix, to be thrown away.
	InPlace bool
	// Into: dir is an empty directory made for this restore (such as a
	// new btrfs subvolume that the caller swaps in afterwards); the tree
	// is built in it directly, with no staging directory and no swap. On
	// an error dir holds part of the tree, to be thrown away. Chunks of
	// Previous are taken from ReuseDir, the copy that holds it, if set.
	Into bool
	// ReuseDir is where the copy holding Previous is, for Into.
	ReuseDir string
	// Progress, if set, is called from one goroutine a few times a second.
	Progress func(Progress)
}

const stagingInfix = ".portvol-restore-"

// Restore makes dir hold snapshot id of volume. It builds the tree in a
// staging directory beside dir, verifies every chunk before writing it,
// syncs the filesystem once, and then swaps the staging directory and dir
// atomically. On any error dir is left as it was.
//
// dir must not be a mount point, and only one Restore may target a dir
// at a time (stale staging directories of earlier, interrupted Restores
// are removed).
func (r *Repo) Restore(ctx context.Context, volume, id, dir string, opts RestoreOptions) (err error) {
	if err := checkVolume(volume); err != nil {
		return err
	}
	if opts.Previous != "" {
		if err := checkSnapshotID(opts.Previous); err != nil {
			return err
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	}
	if err := checkCacheOutside(opts.StatCache, dir); err != nil {
		return err
	}
	m, err := r.loadManifest(ctx, volume, id)
	if err != nil {
		return err
	}
	// Progress starts before the list parts are fetched, with the size
	// the header records; fill replaces it with what is to be written.
	prog := startProgress(opts.Progress, "scan")
	defer prog.finish()
	prog.bytes.Store(m.Stats.DataBytes)
	prog.files.Store(m.Stats.Files)
	if opts.InPlace {
		// It loads the list parts it needs itself: those of the spans
		// that differ from Previous.
		return r.restoreInPlace(ctx, volume, id, dir, m, prog, opts)
	}
	if err := r.loadContent(ctx, m); err != nil {
		return err
	}
	if err := r.checkPrivileged(m); err != nil {
		return err
	}
	if opts.Into {
		return r.restoreInto(ctx, volume, id, dir, m, prog, opts)
	}
	parentDir, base := filepath.Dir(dir), filepath.Base(dir)
	fi, err := os.Lstat(dir)
	exists := err == nil
	switch {
	case exists && !fi.IsDir():
		return fmt.Errorf("volume %q: restore target %s exists and is not a directory: %w", volume, dir, ErrInvalid)
	case err != nil && !os.IsNotExist(err):
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	}
	if err := os.MkdirAll(parentDir, 0o700); err != nil {
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	}
	removeStaleStaging(parentDir, base)

	rs := &restorer{r: r, m: m, paths: m.Paths(), old: -1, stage: -1, prog: prog}
	defer rs.close()
	if exists {
		rs.prepareReuse(ctx, volume, dir, opts)
	}

	var suffix [8]byte
	rand.Read(suffix[:])
	stagePath := filepath.Join(parentDir, "."+base+stagingInfix+hex.EncodeToString(suffix[:]))
	if err := os.Mkdir(stagePath, 0o700); err != nil {
		return fmt.Errorf("volume %q: creating staging directory: %w", volume, err)
	}
	swapped := false
	defer func() {
		if !swapped {
			rs.closeStage()
			os.RemoveAll(stagePath)
		}
	}()
	if rs.stage, err = openDir(stagePath); err != nil {
		return fmt.Errorf("volume %q: %w", volume, err)
	}
	if err := rs.build(ctx); err != nil {
		return fmt.Errorf("volume %q: restoring snapshot %s into %s: %w", volume, id, dir, err)
	}
	if err := rs.fill(ctx); err != nil {
		return fmt.Errorf("volume %q: restoring snapshot %s into %s: %w", volume, id, dir, err)
	}
	rs.prog.setPhase("finish")
	if err := rs.applyMetadata(); err != nil {
		return fmt.Errorf("volume %q: restoring snapshot %s into %s: %w", volume, id, dir, err)
	}
	if err := unix.Syncfs(rs.stage); err != nil {
		return fmt.Errorf("volume %q: syncing restored data: %w", volume, err)
	}
	if err := removeStatCache(opts.StatCache); err != nil {
		return fmt.Errorf("volume %q: %w", volume, err)
	}
	rs.closeStage()
	rs.closeOld()
	if err := swapDirs(stagePath, dir, exists); err != nil {
		return fmt.Errorf("volume %q: %w", volume, err)
	}
	swapped = true
	if exists {
		// The staging path now holds the previous tree.
		if err := os.RemoveAll(stagePath); err != nil {
			return fmt.Errorf("volume %q: snapshot %s restored, but removing the previous copy %s failed: %w", volume, id, stagePath, err)
		}
	}
	if opts.StatCache != "" {
		if err := writeRestoreCache(m, rs.paths, dir, opts.StatCache); err != nil {
			return fmt.Errorf("volume %q: snapshot %s restored, but %w", volume, id, err)
		}
	}
	return nil
}

func checkCacheOutside(cache, dir string) error {
	if cache == "" {
		return nil
	}
	abs, err := filepath.Abs(cache)
	if err != nil {
		return fmt.Errorf("stat cache %s: %w", cache, err)
	}
	d, _ := filepath.Abs(dir)
	if abs == d || strings.HasPrefix(abs, d+string(filepath.Separator)) {
		return fmt.Errorf("stat cache %s lies inside the volume directory %s: %w", cache, dir, ErrInvalid)
	}
	return nil
}

func removeStaleStaging(parentDir, base string) {
	entries, _ := os.ReadDir(parentDir)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "."+base+stagingInfix) {
			os.RemoveAll(filepath.Join(parentDir, e.Name()))
		}
	}
}

// swapDirs puts stage in place of dir atomically: RENAME_EXCHANGE when
// dir exists (afterwards stage holds the old tree), a rename that refuses
// to replace anything otherwise. The parent directory is synced.
func swapDirs(stage, dir string, exists bool) error {
	flags := uint(unix.RENAME_NOREPLACE)
	if exists {
		flags = unix.RENAME_EXCHANGE
	}
	if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, dir, flags); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("cannot swap the restored tree into %s: it is a mount point: %w", dir, err)
		}
		return fmt.Errorf("swapping the restored tree into %s: %w", dir, err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		if exists { // put the old tree back rather than leave an unsynced swap
			unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
		} else {
			unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, stage, unix.RENAME_NOREPLACE)
		}
		return fmt.Errorf("syncing %s: %w", filepath.Dir(dir), err)
	}
	return nil
}

// writeRestoreCache records the restored files as they are now.
func writeRestoreCache(m *Manifest, paths []string, dir, cachePath string) error {
	root, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	sc := &statCache{Snapshot: m.ID, Source: sourceRestore, Taken: time.Now().UnixNano(), Entries: make(map[string]statEntry)}
	for i := range m.Nodes {
		if m.Nodes[i].Type != TypeFile {
			continue
		}
		fd, err := openBeneath(root, paths[i], unix.O_PATH|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("recording %s: %w", paths[i], err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("recording %s: %w", paths[i], err)
		}
		sc.Entries[paths[i]] = statEntryOf(&st)
	}
	return writeStatCache(cachePath, sc)
}

// restoreInto is Restore with opts.Into: the tree is built in the empty
// directory dir itself.
func (r *Repo) restoreInto(ctx context.Context, volume, id, dir string, m *Manifest, prog *progress, opts RestoreOptions) error {
	if err := checkCacheOutside(opts.StatCache, opts.ReuseDir); opts.ReuseDir != "" && err != nil {
		return err
	}
	names, err := os.ReadDir(dir)
	switch {
	case err != nil:
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	case len(names) > 0:
		return fmt.Errorf("volume %q: restore target %s is not empty: %w", volume, dir, ErrInvalid)
	}
	rs := &restorer{r: r, m: m, paths: m.Paths(), old: -1, stage: -1, prog: prog}
	defer rs.close()
	if opts.ReuseDir != "" {
		if _, err := os.Lstat(opts.ReuseDir); err == nil {
			rs.prepareReuse(ctx, volume, opts.ReuseDir, opts)
		}
	}
	if rs.stage, err = openDir(dir); err != nil {
		return fmt.Errorf("volume %q: restore target: %w", volume, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("volume %q: restoring snapshot %s into %s: %w", volume, id, dir, err)
	}
	if err := rs.build(ctx); err != nil {
		return fail(err)
	}
	if err := rs.fill(ctx); err != nil {
		return fail(err)
	}
	rs.prog.setPhase("finish")
	if err := rs.applyMetadata(); err != nil {
		return fail(err)
	}
	if err := unix.Syncfs(rs.stage); err != nil {
		return fmt.Errorf("volume %q: syncing restored data: %w", volume, err)
	}
	if err := removeStatCache(opts.StatCache); err != nil {
		return fmt.Errorf("volume %q: %w", volume, err)
	}
	rs.closeStage()
	rs.closeOld()
	if opts.StatCache != "" {
		if err := writeRestoreCache(m, rs.paths, dir, opts.StatCache); err != nil {
			return fmt.Errorf("volume %q: snapshot %s restored, but %w", volume, id, err)
		}
	}
	return nil
}

// checkPrivileged refuses a snapshot of a plain store that would grant
// privileges, unless the host trusts the store (doc.go).
func (r *Repo) checkPrivileged(m *Manifest) error {
	if !r.crypt.encrypted() && !r.restorePrivileged {
		if err := checkUnprivileged(m); err != nil {
			return fmt.Errorf("volume %q: snapshot %s: %w", m.Volume, m.ID, err)
		}
	}
	return nil
}
