package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/snapshot"
)

type exportOptions struct {
	snapFlags
	snapshot  string
	previous  string
	statCache string
	force     bool
}

func newExportCmd(stdout, stderr io.Writer) *cobra.Command {
	var o exportOptions
	c := &cobra.Command{
		Use:   "export --store URL VOLUME DST_DIR",
		Short: "Restore a snapshot of VOLUME into a directory, without Docker",
		Long: `Restore VOLUME's latest published snapshot (or --snapshot ID) into DST_DIR.

DST_DIR must not exist or be empty; --force replaces a non-empty DST_DIR (its
old contents are deleted once the new tree is complete). The tree is built in
a staging directory beside DST_DIR and swapped in atomically, so DST_DIR's
parent must be writable and on the same file system, and DST_DIR must not be
a mount point. Every chunk is verified before it is written. No lease is
taken: snapshots are immutable, and export works while a host holds the volume.

With --stat-cache (and --force), exporting again into a directory that holds
an earlier export fetches only what changed.

When DST_DIR is the root of a btrfs subvolume, it stays one: the new tree is
restored into a subvolume beside it (".DST_DIR.portvol-export-…", deleted
by the next export if a crash left it) and exchanged with DST_DIR in one
rename. If, in addition, the --stat-cache of the previous export names the
snapshot DST_DIR holds and proves that nothing in it changed since (every
file's size, mtime, ctime and inode as recorded; every entry present with
its type, mode and owner), the restore is in place: a writable snapshot of
DST_DIR gets only the blocks and entries that differ, so the export costs
what changed, not the tree. The result says which path was taken (--json:
method "in-place" or "staging", and staging_reason).

From an unencrypted store, a snapshot holding device nodes, setuid or setgid
files or file capabilities is refused unless --restore-privileged is given:
anyone who can write to such a store can forge its snapshots.`,
		Example: `  portvol export --store s3://backups/portvol pg /srv/pgdata-copy
  portvol export --store s3://backups/portvol pg /srv/pgdata-copy --snapshot 20260102T150405Z-0123456789abcdef`,
		Args:              exactArgs("VOLUME", "DST_DIR"),
		ValidArgsFunction: volumeArgFromStore(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.Context(), &o, args[0], args[1], stdout, stderr)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	f.StringVar(&o.snapshot, "snapshot", "", "snapshot ID to restore (default: the volume's latest published snapshot)")
	f.BoolVar(&o.force, "force", false, "replace the contents of a non-empty DST_DIR")
	f.StringVar(&o.previous, "previous", "", "snapshot ID that DST_DIR holds now: its data is reused instead of fetched")
	f.StringVar(&o.statCache, "stat-cache", "", "local file (outside DST_DIR) recording what export wrote, so that a later export into the same directory fetches only what changed")
	f.BoolVar(&o.restorePrivileged, "restore-privileged", false, "restore device nodes, setuid/setgid files and file capabilities from an unencrypted store (only if you trust everyone who can write to it; encrypted stores restore them always)")
	return c
}

// exportResult is the JSON result of export. Field names are stable.
type exportResult struct {
	Volume           string  `json:"volume"`
	Snapshot         string  `json:"snapshot"`
	Dir              string  `json:"dir"`
	Files            uint64  `json:"files"`
	Bytes            uint64  `json:"bytes"`
	TransferredBytes uint64  `json:"transferred_bytes"`
	ReusedBytes      uint64  `json:"reused_bytes"`
	Seconds          float64 `json:"seconds"`
	// Method is "in-place" (a btrfs subvolume that provably held
	// Previous, updated in a writable snapshot and swapped in) or
	// "staging" (the tree built beside DST_DIR and swapped in), with
	// StagingReason saying why not in place.
	Method        string `json:"method"`
	Previous      string `json:"previous,omitempty"`
	StagingReason string `json:"staging_reason,omitempty"`
}

func runExport(ctx context.Context, o *exportOptions, volume, dstArg string, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
	}
	if err := checkSnapshotArg(o.snapshot); err != nil {
		return err
	}
	if o.previous != "" && !snapshot.ValidSnapshotID(o.previous) {
		return usageError{fmt.Errorf("--previous %q: a snapshot ID looks like 20060102T150405Z-0123456789abcdef", o.previous)}
	}
	dst, err := absDir("DST_DIR", dstArg)
	if err != nil {
		return err
	}
	if o.statCache != "" {
		if o.statCache, err = absDir("--stat-cache", o.statCache); err != nil {
			return err
		}
	}
	if err := checkTarget(dst, o.force); err != nil {
		return err
	}
	start := time.Now()
	s, repo, err := o.openRepo(ctx)
	if err != nil {
		return err
	}
	id := o.snapshot
	if id == "" {
		if id, err = s.headOf(ctx, volume); err != nil {
			return err
		}
	}
	x, why, err := prepareSubvolume(ctx, repo, volume, dst, o.statCache, o.previous)
	if err != nil {
		return fmt.Errorf("export of volume %q into %s failed, %s is unchanged: %w", volume, dst, dst, err)
	}
	rep := newReporter(stderr, o.json, "export", volume)
	if x != nil {
		err = x.run(ctx, repo, volume, id, o.statCache, o.previous, rep.update)
	} else {
		err = repo.Restore(ctx, volume, id, dst, snapshot.RestoreOptions{
			Previous: o.previous, StatCache: o.statCache, Progress: rep.update,
		})
	}
	rep.done()
	if errors.Is(err, snapshot.ErrNotFound) {
		if verr := s.checkVolume(ctx, volume); verr != nil {
			return verr
		}
		return fmt.Errorf("volume %q has no snapshot %s in store %s: list them with portvol snapshots", volume, id, s.flags.where())
	}
	var swapped restoredButError
	if errors.As(err, &swapped) {
		return fmt.Errorf("export of volume %q into %s: %w", volume, dst, err)
	}
	if err != nil {
		return fmt.Errorf("export of volume %q into %s failed, %s is unchanged: %w", volume, dst, dst, err)
	}
	p := rep.result()
	res := exportResult{
		Volume: volume, Snapshot: id, Dir: dst, Files: p.Files, Bytes: p.Bytes,
		TransferredBytes: p.Transferred, ReusedBytes: p.Reused, Seconds: round3(time.Since(start).Seconds()),
		Method: methodStaging, StagingReason: why,
	}
	if x != nil && x.prev != "" {
		// p counts what was written; the result describes the snapshot.
		res.Method, res.Previous = methodInPlace, x.prev
		if info, ierr := repo.Info(ctx, volume, id); ierr == nil {
			res.Files, res.Bytes = info.Stats.Files, info.Stats.DataBytes
			res.ReusedBytes = info.Stats.DataBytes - min(info.Stats.DataBytes, p.Bytes)
		}
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	how := "in place: DST_DIR held snapshot " + res.Previous + " unmodified; only what differs was written, then swapped in"
	switch {
	case x == nil:
		how = "through a staging directory (" + why + ")"
	case x.prev == "":
		how = "through a new subvolume swapped in (" + why + ")"
	}
	_, err = fmt.Fprintf(stdout, "snapshot %s of volume %q restored into %s %s\n%d files, %s; fetched %s, reused %s locally, in %s\n",
		id, volume, dst, how, res.Files, humanize.IBytes(res.Bytes), humanize.IBytes(res.TransferredBytes), humanize.IBytes(res.ReusedBytes), fmtDuration(time.Since(start)))
	return err
}

// checkTarget refuses a DST_DIR that is a file, or a non-empty directory
// without --force.
func checkTarget(dst string, force bool) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("DST_DIR %s: %w", dst, err)
	}
	if !fi.IsDir() {
		return usageError{fmt.Errorf("DST_DIR %s exists and is not a directory: choose a new or empty directory", dst)}
	}
	if force {
		return nil
	}
	f, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("DST_DIR %s: %w", dst, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("DST_DIR %s: %w", dst, err)
	}
	if len(names) > 0 {
		return usageError{fmt.Errorf("DST_DIR %s is not empty: export would replace its contents; choose a new or empty directory, or pass --force to replace them", dst)}
	}
	return nil
}
