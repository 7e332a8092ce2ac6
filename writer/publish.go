package writer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

// ErrUnsettled: a write to the head record got no answer and reading the
// record back could not tell whether it applied. Retrying (or a re-run)
// settles it first: the lease recognises its own write.
var ErrUnsettled = errors.New("the outcome of a head record write is unknown")

// settleTimeout bounds settling a write whose answer was lost.
const settleTimeout = 30 * time.Second

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	// Host is the writer's host id, recorded in the manifest.
	Host string
	// StatCache, Changes, SkipUnchanged and Progress are passed to
	// snapshot.CreateOptions.
	StatCache     string
	Changes       snapshot.ChangeSource
	SkipUnchanged bool
	Progress      func(snapshot.Progress)
	// Create, if set, makes the snapshot in place of
	// repo.Create(ctx, volume, dir, o): the plugin reads a frozen instant
	// of its copy. Parent, Host and Generation are set by Snapshot.
	Create func(ctx context.Context, o snapshot.CreateOptions) (*snapshot.Manifest, error)
	// Made is a snapshot an earlier attempt created from the same,
	// unchanged directory and could not publish: publish it instead of
	// creating another.
	Made string
}

// Result says what Snapshot did.
type Result struct {
	// ID is the snapshot created (or Made, or with Unchanged the head).
	ID string
	// Manifest is the created snapshot's manifest; nil when Made was
	// published.
	Manifest *snapshot.Manifest
	// Unchanged: the directory equals the head; nothing was written.
	Unchanged bool
	// Published: ID is the volume's head now, by this call's publish.
	Published bool
}

// Snapshot is the one way a lease holder turns its directory into the
// volume's head: create a snapshot of dir as the successor of the lease's
// head, recording the lease's generation (the fencing token), and
// publish it with a conditional write that succeeds only while the lease
// is still this holder's. A lease lost meanwhile fails with a
// *lease.FencedError and the snapshot stays invisible. A publish whose
// answer was lost is settled before Snapshot returns: on success the
// snapshot is the head; on an error matching ErrUnsettled nobody knows
// yet (the caller keeps Result.ID and passes it as Made next time);
// otherwise it was not published.
//
// The snapshot is created with the store's guard (snapshot.Options.Fossils
// of the Repo): it references no pack a prune is collecting.
func Snapshot(ctx context.Context, repo *snapshot.Repo, l *lease.Lease, dir string, o SnapshotOptions) (Result, error) {
	var res Result
	if o.Made != "" {
		res.ID = o.Made
	} else {
		co := snapshot.CreateOptions{
			Parent: l.Head(), Host: o.Host, Generation: l.Generation(),
			StatCache: o.StatCache, Changes: o.Changes, SkipUnchanged: o.SkipUnchanged, Progress: o.Progress,
		}
		create := o.Create
		if create == nil {
			create = func(ctx context.Context, co snapshot.CreateOptions) (*snapshot.Manifest, error) {
				return repo.Create(ctx, l.Volume(), dir, co)
			}
		}
		m, err := create(ctx, co)
		if err != nil {
			return res, err
		}
		// m.Unchanged alone means equal content; only with SkipUnchanged
		// is no new snapshot written.
		res.ID, res.Manifest, res.Unchanged = m.ID, m, o.SkipUnchanged && m.Unchanged
	}
	if res.Unchanged || res.ID == l.Head() {
		return res, nil
	}
	err := Publish(ctx, l, res.ID)
	res.Published = err == nil
	return res, err
}

// Publish makes id the head of l's volume if l is still held, settling a
// lost answer (see Snapshot).
func Publish(ctx context.Context, l *lease.Lease, id string) error {
	err := l.Publish(ctx, id)
	if err == nil || errors.Is(err, lease.ErrFenced) || errors.Is(err, lease.ErrReleased) {
		return err
	}
	return settle(ctx, l, id, err)
}

// settle finds out whether a publish of id whose answer was lost applied,
// through lease.Lease.Settle: a renewal continues from our own write if it
// did (the lease knows the bytes it sent), and once the renewal has
// applied, a delayed copy of the publish can no longer apply (it was
// conditional on an older version).
//
// A caller whose context has ended (a remount cancelling the plugin's
// release, SIGINT) is not held up: the write stays unsettled in the lease,
// whose next write (the release, or the remount's) settles it first.
func settle(ctx context.Context, l *lease.Lease, id string, cause error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("volume %q: publishing snapshot %s: %w: %w", l.Volume(), id, ErrUnsettled, cause)
	}
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	rerr := l.Settle(sctx)
	switch {
	case rerr == nil && l.Head() == id:
		return nil // it applied after all
	case rerr == nil:
		return fmt.Errorf("%w (snapshot %s was not published)", cause, id)
	case errors.Is(rerr, lease.ErrFenced), errors.Is(rerr, lease.ErrReleased):
		return rerr
	}
	return fmt.Errorf("volume %q: publishing snapshot %s: %w: %w (reading it back failed too: %w)", l.Volume(), id, ErrUnsettled, cause, rerr)
}
