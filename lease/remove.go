package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/portvol/portvol/internal/volname"
)

// Remove marks a volume removed with a tombstone, so that no host can
// acquire it while the caller moves its objects to the trash. Only a
// released (or never acquired) volume can be removed: a held one fails
// with a *HeldError naming the holder. Removing twice is not an error.
func (m *Manager) Remove(ctx context.Context, volume string) error {
	return m.rewrite(ctx, volume, func(o Observation) (*Record, error) {
		if !o.Exists {
			return &Record{Version: RecordVersion, Volume: volume, State: Removed, Owner: m.host}, nil
		}
		switch r := o.Record; r.State {
		case Removed:
			return nil, nil
		case Held:
			return nil, &HeldError{
				Volume: volume, Owner: r.Owner, Generation: r.Generation, Head: r.Head,
				Self: r.Owner == m.host, Unchanged: o.Unchanged, TTL: o.TTL, Op: "remove",
			}
		}
		next := o.Record
		next.State, next.Owner = Removed, m.host
		return &next, nil
	})
}

// Revive turns a removal tombstone back into a released record with no
// head, for a volume created again under the same name: it starts empty and
// its generations keep rising. A missing record needs nothing. A live
// record is an error: that volume was never removed.
func (m *Manager) Revive(ctx context.Context, volume string) error {
	return m.rewrite(ctx, volume, func(o Observation) (*Record, error) {
		if !o.Exists {
			return nil, nil
		}
		r := o.Record
		if r.State == Released && r.Owner == m.host && r.Head == "" {
			return nil, nil // revived already (a retry after a lost response)
		}
		if r.State != Removed {
			return nil, fmt.Errorf("volume %q was not removed (its head record is %s by host %q at generation %d); use the existing volume", volume, r.State, r.Owner, r.Generation)
		}
		next := r
		next.State, next.Owner, next.Head, next.HeadGeneration, next.Takeover = Released, m.host, "", 0, nil
		return &next, nil
	})
}

// rewrite applies decide to the current record until its conditional
// write wins; decide returns nil to stop without writing.
func (m *Manager) rewrite(ctx context.Context, volume string, decide func(Observation) (*Record, error)) error {
	if err := volname.Check(volume); err != nil {
		return err
	}
	for range maxRounds {
		o, err := m.load(ctx, volume)
		if err != nil {
			return err
		}
		next, err := decide(o)
		if next == nil || err != nil {
			return err
		}
		next.Seq, next.Nonce, next.Renewed, next.TTLMS = o.Record.Seq+1, newNonce(), time.Now().UTC(), m.ttl.Milliseconds()
		data, err := Encode(*next)
		if err != nil {
			return fmt.Errorf("volume %q: %w", volume, err)
		}
		cur, err := m.cas(ctx, volume, o.ETag, data)
		if err != nil {
			return err
		}
		if cur.Exists && string(cur.data) == string(data) {
			return nil
		}
	}
	return fmt.Errorf("volume %q: the head record kept changing; retry", volume)
}
