package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

// releaseTimeout bounds giving the lease back after a failure or an
// interrupt, when the command's own context is already done.
const releaseTimeout = 30 * time.Second

type importOptions struct {
	snapFlags
	options   []string // -o key=value
	hostID    string
	statCache string
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
is refused. Earlier snapshots are kept; the new one becomes the head.

The store must exist: create it with portvol init (a mistyped --store fails
rather than starting a new, empty store).`,
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
	Created       bool    `json:"volume_created"`
	Files         uint64  `json:"files"`
	Dirs          uint64  `json:"dirs"`
	Bytes         uint64  `json:"bytes"`
	DataBytes     uint64  `json:"data_bytes"`
	FilesRead     uint64  `json:"files_read"`
	BytesRead     uint64  `json:"bytes_read"`
	NewBytes      uint64  `json:"new_bytes"`
	UploadedBytes uint64  `json:"uploaded_bytes"`
	Seconds       float64 `json:"seconds"`
}

func runImport(ctx context.Context, o *importOptions, srcArg, volume string, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
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

	s, repo, err := o.openSession(ctx, true)
	if err != nil {
		return err
	}
	lm, err := lease.New(s.store, lease.Options{Host: host})
	if err != nil {
		return err
	}
	created, err := s.ensureVolume(ctx, lm, volume, opts, host)
	if err != nil {
		return err
	}
	l, err := lm.Acquire(ctx, volume)
	if err != nil {
		var held *lease.HeldError
		if errors.As(err, &held) {
			return fmt.Errorf("import refused: %w", err)
		}
		return err
	}
	m, err := createAndPublish(ctx, repo, l, src, o, host, stderr)
	if err != nil {
		return err
	}
	res := importResult{
		Volume: volume, Snapshot: m.ID, Parent: m.Parent, Host: host, Generation: m.Generation, Created: created,
		Files: m.Stats.Files, Dirs: m.Stats.Dirs, Bytes: m.Stats.Bytes, DataBytes: m.Stats.DataBytes,
		FilesRead: m.Stats.FilesRead, BytesRead: m.Stats.BytesRead, NewBytes: m.Stats.NewBytes,
		UploadedBytes: m.Stats.UploadedBytes, Seconds: round3(time.Since(start).Seconds()),
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
// publishes it and releases the lease. The lease is released on every
// path, also when ctx ends (SIGINT).
func createAndPublish(ctx context.Context, repo *snapshot.Repo, l *lease.Lease, src string, o *importOptions, host string, stderr io.Writer) (*snapshot.Manifest, error) {
	volume := l.Volume()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	kaDone := make(chan struct{})
	go func() {
		defer close(kaDone)
		if err := l.KeepAlive(cctx, nil); err != nil {
			cancel(err) // fenced: stop uploading, publishing would fail
		}
	}()
	rep := newReporter(stderr, o.json, "import", volume)
	m, err := repo.Create(cctx, volume, src, snapshot.CreateOptions{
		Parent: l.Head(), Host: host, Generation: l.Generation(), StatCache: o.statCache, Progress: rep.update,
	})
	rep.done()
	if err == nil {
		err = l.Publish(cctx, m.ID)
	}
	if cause := context.Cause(cctx); err != nil && errors.Is(cause, lease.ErrFenced) {
		err = cause
	}
	cancel(nil)
	<-kaDone
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	rerr := l.Release(rctx)
	switch {
	case err != nil && ctx.Err() != nil:
		if rerr != nil {
			return nil, fmt.Errorf("volume %q: import interrupted, nothing was published, and releasing the lease failed (%w): run portvol import again, or portvol takeover %s", volume, rerr, volume)
		}
		return nil, fmt.Errorf("volume %q: import interrupted: nothing was published and the lease is released", volume)
	case err != nil && errors.Is(err, lease.ErrFenced):
		return nil, err
	case err != nil:
		if rerr != nil {
			return nil, fmt.Errorf("%w (releasing the lease failed too: %w)", err, rerr)
		}
		return nil, fmt.Errorf("%w; nothing was published and the lease is released, run import again to retry", err)
	case rerr != nil:
		return nil, fmt.Errorf("volume %q: snapshot %s is published, but releasing the lease failed: %w; run portvol import again or portvol takeover %s", volume, m.ID, rerr, volume)
	}
	return m, nil
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
		have, created, err = catalog.Create(ctx, s.store, catalog.Volume{
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
