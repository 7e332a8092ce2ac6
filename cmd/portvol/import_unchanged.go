package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

// leaseNotTaken is importResult.Lease of an import that found the
// directory equal to the head and wrote nothing.
const leaseNotTaken = "not taken"

// importUnchanged is import's shortcut for a directory that equals the
// volume's head. If nobody holds the volume (its head record is released)
// and the directory is shown equal to the head that record names, by the
// stat cache an earlier import or export of this directory wrote for that
// head, a snapshot would store nothing: import writes nothing — no probe,
// no lease, no snapshot — and names the head it read. Nothing is changed,
// so no lease is needed to keep another writer out; a writer publishing
// meanwhile comes after the head read, as if it had come after this
// import. ok false (including on any failure to look) means: take the
// usual path, which decides and reports errors.
func importUnchanged(ctx context.Context, s *session, repo *snapshot.Repo, lm *lease.Manager, volume, src string,
	opts map[string]string, o *importOptions, host string, start time.Time) (importResult, bool) {
	if o.statCache == "" || opts != nil {
		return importResult{}, false // no proof; -o options are checked on the usual path
	}
	// The volume record is read alongside: without it the usual path
	// creates it.
	exists := make(chan bool, 1)
	go func() {
		_, err := catalog.Get(ctx, s.store, volume)
		exists <- err == nil
	}()
	obs, err := lm.Inspect(ctx, volume)
	if !<-exists || err != nil || !obs.Exists || obs.Record.State != lease.Released || obs.Record.Head == "" {
		return importResult{}, false
	}
	r := obs.Record
	info, same, err := repo.Unchanged(ctx, volume, src, r.Head, o.statCache)
	if err != nil || !same {
		return importResult{}, false
	}
	return importResult{
		Volume: volume, Snapshot: r.Head, Host: host, Generation: r.Generation, Lease: leaseNotTaken, Unchanged: true,
		Files: info.Stats.Files, Dirs: info.Stats.Dirs, Bytes: info.Stats.Bytes, DataBytes: info.Stats.DataBytes,
		Seconds: round3(time.Since(start).Seconds()),
	}, true
}

func printImportUnchanged(stdout io.Writer, asJSON bool, res importResult) error {
	if asJSON {
		return writeJSON(stdout, res)
	}
	_, err := fmt.Fprintf(stdout, "volume %q unchanged: its head snapshot %s (generation %d) already holds this directory; nothing was written\n"+
		"%d files, %s (%s data); read 0 files in %s\n",
		res.Volume, res.Snapshot, res.Generation, res.Files, humanize.IBytes(res.Bytes), humanize.IBytes(res.DataBytes),
		fmtDuration(time.Duration(res.Seconds*float64(time.Second))))
	return err
}
