package prune

import (
	"context"
	"errors"
	"fmt"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// ForgetOptions tune Forget.
type ForgetOptions struct {
	// Head is a snapshot the caller knows to be the head (the holder just
	// published it); it is protected in addition to the head record's.
	Head string
	// DryRun decides and reports, deleting nothing.
	DryRun bool
}

// ForgetResult is what Forget decided, newest first.
type ForgetResult struct {
	Volume    string
	Policy    Policy
	Head      string
	Decisions []Decision
	Forgotten int // manifests deleted (or that would be, in a dry run)
}

// Forget applies p to volume's snapshots: it deletes the manifests of the
// snapshots p does not keep, never the head nor a recent generation's base
// (doc.go, "Retention"). The packs they alone used are reclaimed by a later
// Run. A zero policy forgets nothing.
func Forget(ctx context.Context, repo *snapshot.Repo, store transfer.ObjectStore, volume string, p Policy, o ForgetOptions) (ForgetResult, error) {
	res := ForgetResult{Volume: volume, Policy: p}
	infos, err := repo.List(ctx, volume)
	if err != nil {
		return res, err
	}
	// The head is read after the listing: every listed snapshot was
	// published no later than the head read now.
	head, err := readHead(ctx, store, volume)
	if err != nil {
		return res, err
	}
	res.Head = head
	cands := make([]Candidate, len(infos))
	for i, in := range infos {
		cands[i] = Candidate{ID: in.ID, Parent: in.Parent, Time: in.Started, Generation: in.Generation}
		if t, ok := snapshot.IDTime(in.ID); ok && in.Started.IsZero() {
			cands[i].Time = t
		}
	}
	res.Decisions = Decide(p, cands, head)
	for i := range res.Decisions {
		d := &res.Decisions[i]
		if d.ID == o.Head && !d.Keep {
			d.Keep, d.Reasons = true, []string{"head"}
		}
		if d.Keep {
			continue
		}
		res.Forgotten++
		if o.DryRun {
			continue
		}
		if err := repo.Forget(ctx, volume, d.ID); err != nil {
			return res, err
		}
	}
	return res, nil
}

// readHead returns the head snapshot of volume's head record ("" if it
// has none or no record).
func readHead(ctx context.Context, store transfer.ObjectStore, volume string) (string, error) {
	data, err := readBounded(ctx, store, lease.HeadKey(volume), 64<<10)
	if errors.Is(err, transfer.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("volume %q: reading the head record: %w", volume, err)
	}
	rec, err := lease.Decode(data)
	if err != nil {
		return "", fmt.Errorf("volume %q: head record: %w; nothing was forgotten", volume, err)
	}
	return rec.Head, nil
}
