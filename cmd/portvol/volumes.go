package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

func newVolumesCmd(stdout, stderr io.Writer) *cobra.Command {
	var o snapFlags
	c := &cobra.Command{
		Use:   "volumes --store URL",
		Short: "List the volumes of a store, without a running plugin",
		Long: `List every volume of the store, read straight from it (no plugin needed): its
owner (the host that holds its lease, or held it last), the lease state (held,
released, none: never mounted, removed: in the trash), the lease generation, the
head snapshot and its age, the size of the files in the head snapshot, and how
many removed copies of that name the store's trash keeps (portvol undelete).

Sizes need the store's key if it is encrypted (--encryption-key-file); without
it they show as "-". --json prints an array of objects with stable field names.`,
		Example: `  portvol volumes --store s3://backups/portvol?endpoint=https://s3.example.com
  portvol volumes --json | jq -r '.[] | select(.lease == "held") | .name'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVolumes(cmd.Context(), &o, stdout, stderr)
		},
	}
	o.register(c.Flags())
	return c
}

// volumeJSON is one volume in the JSON listing. Field names are stable.
type volumeJSON struct {
	Name           string            `json:"name"`
	Owner          string            `json:"owner"`
	Lease          string            `json:"lease"` // held, released, removed, none
	Generation     uint64            `json:"generation"`
	Renewed        *time.Time        `json:"renewed,omitempty"` // the holder's clock at its last write
	Head           string            `json:"head"`
	HeadTime       *time.Time        `json:"head_time,omitempty"`
	HeadAgeSeconds *float64          `json:"head_age_seconds,omitempty"`
	SizeBytes      *uint64           `json:"size_bytes,omitempty"` // absent: unknown (no key)
	TrashEntries   int               `json:"trash_entries"`
	Options        map[string]string `json:"options,omitempty"`
	CreatedAt      *time.Time        `json:"created_at,omitempty"`
	CreatedBy      string            `json:"created_by,omitempty"`
	Error          string            `json:"error,omitempty"` // what could not be read
}

func runVolumes(ctx context.Context, o *snapFlags, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	s, repo, err := o.openSession(ctx, false)
	if errors.Is(err, snapshot.ErrKeyRequired) {
		// Who holds what needs no key: list without sizes.
		fmt.Fprintf(stderr, "portvol: store %s is encrypted: sizes need its key (--encryption-key-file)\n", o.where())
		s, err = o.openWithoutKey(ctx)
	}
	if err != nil {
		return err
	}
	names, err := catalog.Names(ctx, s.store)
	if err != nil {
		return s.storeError(err)
	}
	trash, err := catalog.Trash(ctx, s.store, "")
	if err != nil {
		return s.storeError(err)
	}
	inTrash := map[string]int{}
	for _, e := range trash {
		inTrash[e.Name]++
		if !slices.Contains(names, e.Name) {
			names = append(names, e.Name) // removed: listed for undelete
		}
	}
	slices.Sort(names)
	leases, err := lease.New(s.store, lease.Options{Host: "portvol-cli"}) // reads only
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]volumeJSON, len(names))
	var g errgroup.Group
	g.SetLimit(8)
	for i, name := range names {
		g.Go(func() error {
			out[i] = describeVolume(ctx, s, repo, leases, name, inTrash[name], now)
			return ctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, out)
	}
	return printVolumes(stdout, out)
}

// describeVolume reads what the store says about one volume; what it
// cannot read goes into Error, so that one bad record does not hide the
// other volumes.
func describeVolume(ctx context.Context, s *session, repo *snapshot.Repo, leases *lease.Manager, name string, trashed int, now time.Time) volumeJSON {
	v := volumeJSON{Name: name, Lease: "none", TrashEntries: trashed}
	var errs []error
	rec, err := catalog.Get(ctx, s.store, name)
	switch {
	case err == nil:
		v.Options, v.CreatedBy = rec.Options, rec.CreatedBy
		created := rec.CreatedAt
		v.CreatedAt = &created
	case !errors.Is(err, catalog.ErrNotFound):
		errs = append(errs, err)
	}
	o, err := leases.Inspect(ctx, name)
	if err != nil {
		errs = append(errs, err)
	} else if o.Exists {
		r := o.Record
		v.Owner, v.Lease, v.Generation, v.Head = r.Owner, string(r.State), r.Generation, r.Head
		if r.State == lease.Released && r.Generation == 0 {
			v.Owner, v.Lease = "", "none" // claimed by its Create, never held
		}
		if !r.Renewed.IsZero() {
			renewed := r.Renewed
			v.Renewed = &renewed
		}
	}
	if v.Head != "" {
		if t, ok := snapshotTime(v.Head); ok {
			v.HeadTime = &t
		}
		if repo != nil {
			in, err := repo.Info(ctx, name, v.Head)
			if err != nil {
				errs = append(errs, err)
			} else {
				finished, size := in.Finished, in.Stats.Bytes
				v.HeadTime, v.SizeBytes = &finished, &size
			}
		}
		if v.HeadTime != nil {
			age := now.Sub(*v.HeadTime).Seconds()
			v.HeadAgeSeconds = &age
		}
	}
	if err := errors.Join(errs...); err != nil {
		v.Error = err.Error()
	}
	return v
}

// snapshotTime is the start time a snapshot ID begins with
// (20060102T150405Z-...).
func snapshotTime(id string) (time.Time, bool) {
	if len(id) < 16 {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", id[:16])
	return t, err == nil
}

func printVolumes(w io.Writer, vols []volumeJSON) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tOWNER\tLEASE\tGEN\tHEAD\tAGE\tSIZE\tTRASH")
	var notes []string
	for _, v := range vols {
		age, size := "-", "-"
		if v.HeadAgeSeconds != nil {
			age = fmtDuration(time.Duration(*v.HeadAgeSeconds * float64(time.Second)))
		}
		if v.SizeBytes != nil {
			size = humanize.IBytes(*v.SizeBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", v.Name, dash(v.Owner), v.Lease, v.Generation,
			dash(v.Head), age, size, strconv.Itoa(v.TrashEntries))
		if v.Error != "" {
			notes = append(notes, v.Name+": "+v.Error)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	if len(vols) == 0 {
		fmt.Fprintln(w, "(no volumes)")
	}
	return nil
}

// openWithoutKey opens an encrypted store for what needs no key: its
// volume records, leases and trash.
func (o *snapFlags) openWithoutKey(ctx context.Context) (*session, error) {
	st, err := openStore(ctx, o.store, nil, false)
	if err != nil {
		return nil, err
	}
	return &session{flags: o, store: st}, nil
}
