package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
)

type forgetOptions struct {
	snapFlags
	keep   [5]int
	dryRun bool
}

func newForgetCmd(stdout, stderr io.Writer) *cobra.Command {
	var o forgetOptions
	c := &cobra.Command{
		Use:   "forget --store URL VOLUME [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N]",
		Short: "Forget the snapshots of VOLUME that a retention policy does not keep",
		Long: `Delete the manifests of VOLUME's snapshots that the policy does not keep. The
packs they alone used are reclaimed by a later portvol prune (or the plugin's
background maintenance).

The policy is restic's: --keep-last N keeps the N newest; --keep-hourly N keeps
the newest snapshot of each of the N most recent hours that have one (daily,
weekly and monthly likewise, in UTC). A snapshot any rule keeps is kept. Without
--keep-* flags the volume's own policy applies (its keep_* options, or the
default: last 24, daily 7). Always kept, whatever the policy: the head, any
snapshot newer than the head or made from it (it may be about to be published),
and the newest snapshot of each of the 4 generations before the newest one (the
copies other hosts hold, so they restore incrementally).

--dry-run shows the decision without deleting anything.`,
		Example: `  portvol forget --store s3://backups/portvol pg --keep-last 10 --keep-daily 14 --dry-run
  portvol forget --store s3://backups/portvol pg`,
		Args:              exactArgs("VOLUME"),
		ValidArgsFunction: volumeArgFromStore(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := false
			for _, n := range prune.OptionNames {
				set = set || cmd.Flags().Changed(strings.ReplaceAll(n, "_", "-"))
			}
			return runForget(cmd.Context(), &o, args[0], set, stdout, stderr)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	for i, n := range prune.OptionNames {
		f.IntVar(&o.keep[i], strings.ReplaceAll(n, "_", "-"), 0, "keep by the "+strings.TrimPrefix(n, "keep_")+" rule (see above)")
	}
	f.BoolVar(&o.dryRun, "dry-run", false, "show what would be forgotten; delete nothing")
	return c
}

// forgetJSON is the JSON result of forget. Field names are stable.
type forgetJSON struct {
	Volume    string             `json:"volume"`
	Policy    map[string]string  `json:"policy"`
	Head      string             `json:"head"`
	DryRun    bool               `json:"dry_run"`
	Kept      int                `json:"kept"`
	Forgotten int                `json:"forgotten"`
	Snapshots []forgetSnapshotJS `json:"snapshots"`
}

type forgetSnapshotJS struct {
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	Keep    bool      `json:"keep"`
	Reasons []string  `json:"reasons"`
}

func runForget(ctx context.Context, o *forgetOptions, volume string, set bool, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
	}
	p := prune.Policy{Last: o.keep[0], Hourly: o.keep[1], Daily: o.keep[2], Weekly: o.keep[3], Monthly: o.keep[4]}
	for i, n := range o.keep {
		if n < 0 {
			return usageError{fmt.Errorf("--%s %d: must not be negative", strings.ReplaceAll(prune.OptionNames[i], "_", "-"), n)}
		}
	}
	s, repo, err := o.openRepo(ctx)
	if err != nil {
		return err
	}
	if err := s.checkVolume(ctx, volume); err != nil {
		return err
	}
	if !set {
		if p, err = s.volumePolicy(ctx, volume); err != nil {
			return err
		}
	}
	res, err := prune.Forget(ctx, repo, s.store, volume, p, prune.ForgetOptions{DryRun: o.dryRun})
	if err != nil {
		return err
	}
	if o.json {
		out := forgetJSON{Volume: volume, Policy: p.Options(), Head: res.Head, DryRun: o.dryRun, Forgotten: res.Forgotten, Snapshots: []forgetSnapshotJS{}}
		for _, d := range res.Decisions {
			if d.Keep {
				out.Kept++
			}
			out.Snapshots = append(out.Snapshots, forgetSnapshotJS{ID: d.ID, Started: d.Time.UTC(), Keep: d.Keep, Reasons: append([]string{}, d.Reasons...)})
		}
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tDECISION")
	for _, d := range res.Decisions {
		what := "forget"
		if d.Keep {
			what = "keep (" + strings.Join(d.Reasons, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.ID, d.Time.Local().Format("2006-01-02 15:04:05"), what)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := "forgot"
	if o.dryRun {
		verb = "would forget"
	}
	fmt.Fprintf(stdout, "%s %d of %d snapshots of %s (policy: %s); run portvol prune to reclaim their space\n",
		verb, res.Forgotten, len(res.Decisions), volume, p)
	return nil
}

// volumePolicy is the retention a volume was created with (its keep_*
// options), or the default.
func (s *session) volumePolicy(ctx context.Context, volume string) (prune.Policy, error) {
	v, err := catalog.Get(ctx, s.store, volume)
	if err != nil {
		return prune.Policy{}, err
	}
	p, has, err := prune.ParseOptions(v.Options)
	if err != nil {
		return prune.Policy{}, fmt.Errorf("volume %q: %w", volume, err)
	}
	if !has {
		p = prune.DefaultPolicy
	}
	return p, nil
}

type pruneOptions struct {
	snapFlags
	dryRun bool
	margin time.Duration
	hostID string
}

func newPruneCmd(stdout, stderr io.Writer) *cobra.Command {
	var o pruneOptions
	c := &cobra.Command{
		Use:   "prune --store URL [--margin D] [--dry-run]",
		Short: "Delete the packs no snapshot needs (two steps, safe while hosts write)",
		Long: `Reclaim space: delete the packs (and pack indexes) that no snapshot references,
including those of forgotten snapshots, of removed volumes whose trash expired,
and of interrupted imports older than the margin.

It works in two steps and takes no lock, so hosts may snapshot, import, forget
and prune meanwhile. Each run first sweeps the collections an earlier run made
that are at least --margin old (deleting their packs unless a snapshot uses them
again), then marks the packs that no snapshot references and that are older than
--margin in a new collection. A pack is therefore deleted one to two runs after
it became garbage, and never sooner than --margin after it was marked. Ages are
judged by the store's own clock. The margin must be much longer than the window
between a writer's last check and its manifest write (a minute); the default,
1h, also lets the slowest upload finish without having to redo work.

--margin 0s marks and sweeps at once: use it only while no host writes to the
store; two runs in a row then reclaim everything unreferenced.`,
		Example: `  portvol prune --store s3://backups/portvol --dry-run
  portvol prune --store s3://backups/portvol
  portvol prune --store file:///srv/store --margin 0s && portvol prune --store file:///srv/store --margin 0s`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPrune(cmd.Context(), &o, stdout, stderr)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	f.BoolVar(&o.dryRun, "dry-run", false, "show what would be marked and deleted; change nothing")
	f.DurationVar(&o.margin, "margin", prune.DefaultMargin, "how old an unreferenced pack must be to be marked, and a collection to be swept (store clock)")
	f.StringVar(&o.hostID, "host-id", "", "host id written into collection records (default: <hostname>-cli)")
	return c
}

// pruneJSON is the JSON result of prune. Field names are stable.
type pruneJSON struct {
	DryRun         bool     `json:"dry_run"`
	MarginSeconds  float64  `json:"margin_seconds"`
	Manifests      int      `json:"manifests"`
	Packs          int      `json:"packs"`
	PackBytes      int64    `json:"pack_bytes"`
	Unreferenced   int      `json:"unreferenced_packs"`
	UnrefBytes     int64    `json:"unreferenced_bytes"`
	Marked         int      `json:"marked_packs"`
	MarkedBytes    int64    `json:"marked_bytes"`
	Record         string   `json:"record,omitempty"`
	Swept          int      `json:"swept_collections"`
	Waiting        int      `json:"waiting_collections"`
	Deleted        int      `json:"deleted_packs"`
	DeletedBytes   int64    `json:"deleted_bytes"`
	Revived        int      `json:"revived_packs"`
	IndexesDeleted int      `json:"deleted_indexes"`
	Problems       []string `json:"problems,omitempty"`
	Seconds        float64  `json:"seconds"`
}

func runPrune(ctx context.Context, o *pruneOptions, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.margin < 0 {
		return usageError{fmt.Errorf("--margin %s: must not be negative", o.margin)}
	}
	host := o.hostID
	if host == "" {
		h, err := cliHostID(os.Hostname)
		if err != nil {
			return err
		}
		host = h
	}
	start := time.Now()
	s, repo, err := o.openRepo(ctx)
	if err != nil {
		return err
	}
	rep := newReporter(stderr, o.json, "prune", "store")
	res, err := prune.Run(ctx, repo, s.store, prune.Options{
		Margin: o.margin, ZeroMargin: o.margin == 0, DryRun: o.dryRun, Host: host,
		Progress: func(p prune.Progress) {
			rep.update(snapshot.Progress{Phase: p.Phase, Files: uint64(max(p.Manifests, p.Done))})
		},
	})
	rep.done()
	if err != nil {
		if errors.Is(err, prune.ErrVersion) {
			return fmt.Errorf("store %s: %w", s.flags.where(), err)
		}
		return err
	}
	if o.json {
		return writeJSON(stdout, pruneJSON{
			DryRun: res.DryRun, MarginSeconds: res.Margin.Seconds(), Manifests: res.Manifests,
			Packs: res.Packs, PackBytes: res.PackBytes, Unreferenced: res.Unreferenced, UnrefBytes: res.UnrefBytes,
			Marked: res.Marked, MarkedBytes: res.MarkedBytes, Record: res.Record, Swept: res.Swept, Waiting: res.Waiting,
			Deleted: res.Deleted, DeletedBytes: res.DeletedBytes, Revived: res.Revived, IndexesDeleted: res.IndexesDeleted,
			Problems: res.Problems, Seconds: round3(time.Since(start).Seconds()),
		})
	}
	would := ""
	if o.dryRun {
		would = "would have "
	}
	fmt.Fprintf(stdout, "%d snapshots reference %d of %d packs (%s); %d unreferenced (%s)\n",
		res.Manifests, res.Packs-res.Unreferenced, res.Packs, humanize.IBytes(uint64(res.PackBytes)), res.Unreferenced, humanize.IBytes(uint64(res.UnrefBytes)))
	fmt.Fprintf(stdout, "%sswept %d collections: %d packs deleted (%s), %d revived; %d collections wait for their margin\n",
		would, res.Swept, res.Deleted, humanize.IBytes(uint64(res.DeletedBytes)), res.Revived, res.Waiting)
	fmt.Fprintf(stdout, "%smarked %d packs (%s) older than %s for deletion by a run at least %s from now; %d pack indexes deleted\n",
		would, res.Marked, humanize.IBytes(uint64(res.MarkedBytes)), o.margin, o.margin, res.IndexesDeleted)
	for _, p := range res.Problems {
		fmt.Fprintf(stderr, "warning: %s (left alone; delete it once you have looked at it)\n", p)
	}
	return nil
}
