package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/writer"
)

type importOptions struct {
	snapFlags
	options   []string // -o key=value
	hostID    string
	statCache string
	leaseTTL  time.Duration
	lockDir   string
	base      string // --base: import_base.go
}

// importObserver, if set (by tests), hears when an import takes its
// lease and when it is about to give it back.
var importObserver func(volume string, generation uint64, held bool)

// openClaim takes this host's local claim on volume, which lets a re-run
// continue the lease of a killed run at once. nil without a lock
// directory (no home directory and no --lock-dir).
func (o *importOptions) openClaim(storeID, host, volume string) (*writer.Claim, error) {
	dir := o.lockDir
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, nil
		}
		dir = filepath.Join(cache, "portvol", "locks")
	}
	c, err := writer.OpenClaim(dir, storeID, host, volume)
	if errors.Is(err, writer.ErrBusy) {
		return nil, fmt.Errorf("import refused: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: check --lock-dir (PORTVOL_LOCK_DIR), a local directory this user can write", err)
	}
	return c, nil
}

func newImportCmd(stdout, stderr io.Writer) *cobra.Command {
	var o importOptions
	c := &cobra.Command{
		Use:   "import --store URL SRC_DIR VOLUME",
		Short: "Make a new snapshot of VOLUME from a directory",
		Long: `Make a new snapshot of VOLUME from the contents of SRC_DIR and publish it as the
volume's latest snapshot, so that the next host to mount the volume gets it.

The volume is created in the store if it does not exist (with the -o options,
as docker volume create -o would). import takes the volume's lease like a
host mounting it does: while a plugin somewhere has the volume mounted, import
is refused. Earlier snapshots are kept; the new one becomes the head. If
--stat-cache shows SRC_DIR unchanged since the head (which an import or
export with that cache made), import writes nothing and says "unchanged".

An import that died holding the lease (killed, or the store unreachable for
longer than its retries) is recovered by running the same import again on this
host: its lock file under --lock-dir proves the earlier run gone, and the lease
is continued at once. A second import of the volume on this host while one runs
is refused.

The store must exist: create it with portvol init (a mistyped --store fails
rather than starting a new, empty store).` + baseLongHelp,
		Example: `  portvol import --store s3://backups/portvol /srv/pgdata pg
  portvol import --store file:///mnt/nfs/portvol --encryption-key-file /etc/portvol/key ./data web -o snapshot_interval=1m`,
		Args:              exactArgs("SRC_DIR", "VOLUME"),
		ValidArgsFunction: volumeArgFromStore(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd.Context(), &o, args[0], args[1], stdout, stderr)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	f.StringArrayVarP(&o.options, "opt", "o", nil, "volume option NAME=VALUE for a volume that does not exist yet (repeatable); valid: "+strings.Join(driver.OptionNames(), ", "))
	f.StringVar(&o.hostID, "host-id", "", "host id to take the lease as (default <hostname>-cli)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", lease.DefaultTTL, "how long the import's lease lasts without renewal (as serve --lease-ttl)")
	f.StringVar(&o.lockDir, "lock-dir", "", "local directory of this host's import lock files, which let a re-run continue the lease of a killed import at once (default ~/.cache/portvol/locks)")
	f.StringVar(&o.base, "base", "", baseHelp)
	f.StringVar(&o.statCache, "stat-cache", "", "local file (outside SRC_DIR) recording what import saw, so that the next import of the same directory reads only changed files")
	return c
}

// parseVolumeOptions turns -o NAME=VALUE flags into normalized options;
// nil if none were given.
func parseVolumeOptions(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	raw := map[string]string{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("-o %q: want NAME=VALUE, e.g. -o snapshot_interval=5m", kv)}
		}
		if _, dup := raw[k]; dup {
			return nil, usageError{fmt.Errorf("-o %s given twice", k)}
		}
		raw[k] = v
	}
	opts, err := driver.ParseOptions(raw)
	if err != nil {
		return nil, usageError{err}
	}
	return opts, nil
}

// importResult is the JSON result of import. Field names are stable.
type importResult struct {
	Volume        string  `json:"volume"`
	Snapshot      string  `json:"snapshot"`
	Parent        string  `json:"parent,omitempty"`
	Host          string  `json:"host"`
	Generation    uint64  `json:"generation"`
	Lease         string  `json:"lease"` // acquired, resumed (a killed earlier run's), took over, or not taken (unchanged)
	Created       bool    `json:"volume_created"`
	Unchanged     bool    `json:"unchanged"` // SRC_DIR equals the head: nothing written, Snapshot is the head
	Files         uint64  `json:"files"`
	Dirs          uint64  `json:"dirs"`
	Bytes         uint64  `json:"bytes"`
	DataBytes     uint64  `json:"data_bytes"`
	FilesRead     uint64  `json:"files_read"`
	BytesRead     uint64  `json:"bytes_read"`
	NewBytes      uint64  `json:"new_bytes"`
	UploadedBytes uint64  `json:"uploaded_bytes"`
	Seconds       float64 `json:"seconds"`
	// BaseFallback, with --base, is why the base could not be used.
	BaseFallback string `json:"base_fallback,omitempty"`
}

func runImport(ctx context.Context, o *importOptions, srcArg, volume string, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
	}
	if o.leaseTTL < time.Second || o.leaseTTL > time.Hour || o.leaseTTL%time.Millisecond != 0 {
		return usageError{fmt.Errorf("--lease-ttl %s: use whole milliseconds from 1s to 1h", o.leaseTTL)}
	}
	opts, err := parseVolumeOptions(o.options)
	if err != nil {
		return err
	}
	host := o.hostID
	if host == "" {
		if host, err = cliHostID(os.Hostname); err != nil {
			return err
		}
	} else if err := lease.CheckHost(host); err != nil {
		return usageError{fmt.Errorf("--host-id: %w", err)}
	}
	src, err := absDir("SRC_DIR", srcArg)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return usageError{fmt.Errorf("SRC_DIR %s is not a directory; give the directory whose contents become the volume", src)}
	}
	if o.statCache != "" {
		if o.statCache, err = absDir("--stat-cache", o.statCache); err != nil {
			return err
		}
	}
	start := time.Now()

	s, repo, err := o.openSession(ctx, false) // proveWrites below, if it writes
	if err != nil {
		return err
	}
	notify := func(msg string) {
		if !o.json {
			fmt.Fprintln(stderr, "portvol: "+msg)
		}
	}
	var base *importBase
	if o.base != "" {
		if base, err = openImportBase(o.base, src, o.statCache, s.id, volume, notify); err != nil {
			return err
		}
		defer base.close()
	}
	leaseStore := s.store
	claim, err := o.openClaim(s.id, host, volume)
	switch {
	case err != nil:
		return err
	case claim != nil:
		defer claim.Close()
		leaseStore = claim.Watch(s.store) // records each acquisition before it is sent
	case !o.json:
		fmt.Fprintln(stderr, "portvol: no lock directory (set --lock-dir): a killed import of this volume is recovered only after its lease has been unchanged for a TTL")
	}
	lm, err := lease.New(leaseStore, lease.Options{Host: host, TTL: o.leaseTTL})
	if err != nil {
		return err
	}
	if res, ok := importUnchanged(ctx, s, repo, lm, volume, src, opts, o, host, start); ok {
		return printImportUnchanged(stdout, o.json, res)
	}
	if err := s.proveWrites(ctx); err != nil {
		return err
	}
	created, err := s.ensureVolume(ctx, lm, volume, opts, host)
	if err != nil {
		return err
	}
	wo := writer.Options{Leases: lm, Volume: volume, Claim: claim, Observe: importObserver, Notify: func(msg string) {
		if !o.json {
			fmt.Fprintln(stderr, "portvol: "+msg)
		}
	}}
	m, out, err := createAndPublish(ctx, repo, wo, src, base, o, host, stderr)
	if err != nil {
		return err
	}
	switch {
	case o.json:
	case out.How == writer.Resumed:
		fmt.Fprintf(stderr, "portvol: continued the lease (generation %d) that a killed earlier import on this host left held\n", out.Generation)
	case out.How == writer.TookOver:
		fmt.Fprintf(stderr, "portvol: took over the lease this host id left held, after seeing it unchanged for a TTL (now generation %d)\n", out.Generation)
	}
	res := importResult{
		Volume: volume, Snapshot: m.ID, Parent: m.Parent, Host: host, Generation: m.Generation, Lease: string(out.How), Created: created,
		Files: m.Stats.Files, Dirs: m.Stats.Dirs, Bytes: m.Stats.Bytes, DataBytes: m.Stats.DataBytes,
		FilesRead: m.Stats.FilesRead, BytesRead: m.Stats.BytesRead, NewBytes: m.Stats.NewBytes,
		UploadedBytes: m.Stats.UploadedBytes, Seconds: round3(time.Since(start).Seconds()),
		BaseFallback: base.fallback(),
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	_, err = fmt.Fprintf(stdout, "snapshot %s of volume %q published (generation %d)\n"+
		"%d files, %s (%s data); read %d files (%s), uploaded %s in %s\n",
		m.ID, volume, m.Generation, m.Stats.Files, humanize.IBytes(m.Stats.Bytes), humanize.IBytes(m.Stats.DataBytes),
		m.Stats.FilesRead, humanize.IBytes(m.Stats.BytesRead), humanize.IBytes(m.Stats.UploadedBytes), fmtDuration(time.Since(start)))
	return err
}

// createAndPublish snapshots src as the successor of the lease's head,
// publishes it and releases the lease, through package writer (the same
// sequence the plugin runs). The lease is released on every path, also
// when ctx ends (SIGINT); a lease a killed earlier run left held is
// continued (see writer.Acquire).
func createAndPublish(ctx context.Context, repo *snapshot.Repo, wo writer.Options, src string, base *importBase, o *importOptions, host string, stderr io.Writer) (*snapshot.Manifest, writer.Outcome, error) {
	volume := wo.Volume
	var res writer.Result
	out, err := writer.Run(ctx, wo, func(ctx context.Context, l *lease.Lease) error {
		so := writer.SnapshotOptions{Host: host, StatCache: o.statCache}
		if base != nil {
			var err error
			if so.Create, err = base.freeze(ctx, repo, l.Head()); err != nil {
				return err
			}
		}
		rep := newReporter(stderr, o.json, "import", volume)
		so.Progress = rep.update
		var err error
		res, err = writer.Snapshot(ctx, repo, l, src, so)
		rep.done()
		return err
	})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held) && out.Generation == 0:
		return nil, out, fmt.Errorf("import refused: %w", err)
	case out.Generation == 0:
		return nil, out, err // nothing was taken
	}
	// The release settles a publish whose answer was lost: what the head
	// is now says whether this import's snapshot made it.
	published := res.ID != "" && out.Head == res.ID && (res.Published || err != nil && out.ReleaseErr == nil)
	base.finish(published, res.ID)
	rerr := out.ReleaseErr
	again := fmt.Sprintf("run the same portvol import again on this host (it continues the lease this run holds), or from another host portvol takeover %s once it has expired", volume)
	switch {
	case err != nil && published:
		// Published after all (a lost answer, settled by the release).
	case err != nil && ctx.Err() != nil:
		if rerr != nil {
			return nil, out, fmt.Errorf("volume %q: import interrupted, nothing was published, and releasing the lease failed (%w): %s", volume, rerr, again)
		}
		return nil, out, fmt.Errorf("volume %q: import interrupted: nothing was published and the lease is released", volume)
	case err != nil && errors.Is(err, lease.ErrFenced):
		return nil, out, err
	case err != nil:
		if rerr != nil {
			return nil, out, fmt.Errorf("%w (releasing the lease failed too: %w; %s)", err, rerr, again)
		}
		return nil, out, fmt.Errorf("%w; nothing was published and the lease is released, run import again to retry", err)
	case rerr != nil:
		return nil, out, fmt.Errorf("volume %q: snapshot %s is published, but releasing the lease failed: %w; %s", volume, res.ID, rerr, again)
	}
	return res.Manifest, out, nil
}

// ensureVolume creates the volume's record unless it exists. opts nil
// means no -o was given: an existing volume is then fine as it is.
func (s *session) ensureVolume(ctx context.Context, lm *lease.Manager, volume string, opts map[string]string, host string) (bool, error) {
	want := opts
	if want == nil {
		var err error
		if want, err = driver.ParseOptions(nil); err != nil {
			return false, err
		}
	}
	// Read first: the volume usually exists, and a read is one request
	// where a refused create-if-absent is two.
	have, err := catalog.Get(ctx, s.store, volume)
	created := false
	if errors.Is(err, catalog.ErrNotFound) {
		// A removed volume keeps a tombstone head record; bringing the
		// name back (and finishing the move to the trash) is the plugin's.
		o, ierr := lm.Inspect(ctx, volume)
		if ierr != nil {
			return false, ierr
		}
		if o.Exists && o.Record.State == lease.Removed {
			return false, fmt.Errorf("volume %q was removed from store %s (by host %q): create it again with docker volume create -d portvol %s, or bring it back with portvol undelete %s, then import",
				volume, s.flags.where(), o.Record.Owner, volume, volume)
		}
		// Through the driver's CreateRecord: it claims the head record
		// first, so an undelete under way cannot lend this volume its head.
		have, created, err = driver.CreateRecord(ctx, s.store, lm, catalog.Volume{
			Name: volume, Options: want, CreatedAt: time.Now().UTC(), CreatedBy: host,
		})
	}
	if err != nil {
		return false, fmt.Errorf("store %s: %w", s.flags.where(), err)
	}
	if created || opts == nil {
		return created, nil
	}
	haveNorm, err := driver.ParseOptions(have.Options)
	if err != nil {
		return false, fmt.Errorf("volume %q exists in store %s with options this portvol cannot read (%w); import without -o", volume, s.flags.where(), err)
	}
	if !maps.Equal(haveNorm, opts) {
		return false, fmt.Errorf("volume %q already exists with options %s, not %s: import without -o to keep its options",
			volume, fmtOptions(haveNorm), fmtOptions(opts))
	}
	return false, nil
}

func fmtOptions(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}
