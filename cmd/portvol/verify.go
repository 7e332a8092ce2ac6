package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvol/portvol/snapshot"
)

type verifyOptions struct {
	snapFlags
	snapshot string
	all      bool
}

func newVerifyCmd(stdout, stderr io.Writer) *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify --store URL VOLUME",
		Short: "Re-read a snapshot of VOLUME from the store and check every byte",
		Long: `Re-read VOLUME's latest published snapshot (or --snapshot ID, or --all of them)
from the store and check everything: the manifest, that every pack still has the
content its name (its hash) promises, and that every chunk decrypts, decompresses
and matches its ID.

Exits 0 and prints "ok: N chunks, M packs verified" when all is well; exits 1
naming every damaged or missing object otherwise.`,
		Example: `  portvol verify --store s3://backups/portvol pg
  portvol verify --store s3://backups/portvol pg --all`,
		Args:              exactArgs("VOLUME"),
		ValidArgsFunction: volumeArgFromStore(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), &o, args[0], stdout, stderr)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	f.StringVar(&o.snapshot, "snapshot", "", "snapshot ID to verify (default: the volume's latest published snapshot)")
	f.BoolVar(&o.all, "all", false, "verify every snapshot of the volume")
	return c
}

// verifyResult is the JSON result of verify. Field names are stable.
type verifyResult struct {
	Volume    string           `json:"volume"`
	OK        bool             `json:"ok"`
	Chunks    int              `json:"chunks"`
	Packs     int              `json:"packs"`
	Snapshots []verifySnapshot `json:"snapshots"`
	Seconds   float64          `json:"seconds"`
}

type verifySnapshot struct {
	ID       string   `json:"id"`
	OK       bool     `json:"ok"`
	Chunks   int      `json:"chunks"`
	Packs    int      `json:"packs"`
	Problems []string `json:"problems,omitempty"`
}

func runVerify(ctx context.Context, o *verifyOptions, volume string, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := checkVolumeArg(volume); err != nil {
		return err
	}
	if err := checkSnapshotArg(o.snapshot); err != nil {
		return err
	}
	if o.all && o.snapshot != "" {
		return usageError{errors.New("give --snapshot ID or --all, not both")}
	}
	start := time.Now()
	s, repo, err := o.openRepo(ctx)
	if err != nil {
		return err
	}
	var ids []string
	switch {
	case o.all:
		infos, err := repo.List(ctx, volume)
		if err != nil {
			return err
		}
		if len(infos) == 0 {
			if err := s.checkVolume(ctx, volume); err != nil {
				return err
			}
			return fmt.Errorf("volume %q has no snapshots in store %s: nothing to verify", volume, s.flags.where())
		}
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
	case o.snapshot != "":
		ids = []string{o.snapshot}
	default:
		head, err := s.headOf(ctx, volume)
		if err != nil {
			return err
		}
		ids = []string{head}
	}

	res := verifyResult{Volume: volume, OK: true}
	chunks, packs := map[snapshot.ID]bool{}, map[snapshot.ID]bool{}
	for _, id := range ids {
		vs, err := verifyOne(ctx, repo, volume, id, chunks, packs)
		if err != nil {
			return err
		}
		res.OK = res.OK && vs.OK
		res.Snapshots = append(res.Snapshots, vs)
		if !o.json {
			if vs.OK {
				fmt.Fprintf(stderr, "snapshot %s: ok (%d chunks, %d packs)\n", id, vs.Chunks, vs.Packs)
			} else {
				fmt.Fprintf(stderr, "snapshot %s: DAMAGED\n  %s\n", id, strings.Join(vs.Problems, "\n  "))
			}
		}
	}
	res.Chunks, res.Packs, res.Seconds = len(chunks), len(packs), round3(time.Since(start).Seconds())
	if o.json {
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else if res.OK {
		fmt.Fprintf(stdout, "ok: %d chunks, %d packs verified\n", res.Chunks, res.Packs)
	}
	if !res.OK {
		var bad []string
		for _, vs := range res.Snapshots {
			if !vs.OK {
				bad = append(bad, vs.ID)
			}
		}
		return fmt.Errorf("volume %q: %d of %d snapshots are damaged (%s): restore the named objects from a copy of the store if you have one, and export an older sound snapshot meanwhile",
			volume, len(bad), len(res.Snapshots), strings.Join(bad, ", "))
	}
	return nil
}

// verifyOne verifies one snapshot and adds its chunks and packs to the
// sets. Damage is reported in the result; other errors (the store failed,
// no such snapshot) are returned.
func verifyOne(ctx context.Context, repo *snapshot.Repo, volume, id string, chunks, packs map[snapshot.ID]bool) (verifySnapshot, error) {
	vs := verifySnapshot{ID: id, OK: true}
	m, err := repo.Load(ctx, volume, id)
	if err == nil {
		vs.Chunks, vs.Packs = len(m.Chunks), len(m.Packs)
		for _, c := range m.Chunks {
			chunks[c.ID] = true
		}
		for _, p := range m.Packs {
			packs[p] = true
		}
		err = repo.Verify(ctx, volume, id)
	}
	switch {
	case err == nil:
		return vs, nil
	case errors.Is(err, snapshot.ErrCorrupt):
		vs.OK = false
		vs.Problems = problems(err)
		return vs, nil
	case errors.Is(err, snapshot.ErrNotFound):
		return vs, fmt.Errorf("volume %q has no snapshot %s: list them with portvol snapshots", volume, id)
	}
	return vs, err
}

// problems lists the damaged objects an error from Verify names, one per
// line of its joined errors.
func problems(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
			return
		}
		if w := errors.Unwrap(e); w != nil && w != snapshot.ErrCorrupt {
			if _, ok := w.(interface{ Unwrap() []error }); ok {
				walk(w)
				return
			}
		}
		out = append(out, e.Error())
	}
	walk(err)
	return out
}
