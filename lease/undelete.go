package lease

import (
	"context"
	"fmt"
)

// Undelete turns a removal tombstone (or a missing record) back into a
// released record whose head is snapshot head, published at
// headGeneration: the volume is back from the trash with its last
// published snapshot, and the next Acquire restores it. Generations keep
// rising: the record keeps the tombstone's generation (or headGeneration
// if that is higher), so no earlier holder's generation can come back to
// life. head "" (a volume that never published) needs headGeneration 0. A
// live record is an error: that volume is in use under this name. Calling
// it again after it succeeded is not an error.
func (m *Manager) Undelete(ctx context.Context, volume, head string, headGeneration uint64) error {
	switch {
	case head == "" && headGeneration != 0:
		return fmt.Errorf("volume %q: undelete: head generation %d without a head snapshot", volume, headGeneration)
	case head != "" && headGeneration == 0:
		return fmt.Errorf("volume %q: undelete: head snapshot %q without the generation that published it", volume, head)
	case head != "":
		if err := CheckSnapshotID(head); err != nil {
			return fmt.Errorf("volume %q: undelete: %w", volume, err)
		}
	}
	return m.rewrite(ctx, volume, func(o Observation) (*Record, error) {
		if !o.Exists {
			return &Record{
				Version: RecordVersion, Volume: volume, State: Released, Owner: m.host,
				Generation: headGeneration, Head: head, HeadGeneration: headGeneration,
			}, nil
		}
		r := o.Record
		if r.State == Released && r.Owner == m.host && r.Head == head && r.HeadGeneration == headGeneration {
			return nil, nil // undeleted already (a retry after a lost response)
		}
		if r.State != Removed {
			return nil, fmt.Errorf("volume %q exists again under this name (its head record is %s by host %q at generation %d): remove it first, or undelete under the name it has now", volume, r.State, r.Owner, r.Generation)
		}
		next := r
		next.State, next.Owner, next.Head, next.HeadGeneration, next.Takeover = Released, m.host, head, headGeneration, nil
		next.Generation = max(r.Generation, headGeneration)
		return &next, nil
	})
}
