package lease

import "context"

// Claim makes the head record of a volume name that has none: released,
// generation 0, no head, owned by this host. Creating a volume claims its
// name this way before it writes the volume's record, so that an
// undelete, which only turns a tombstone or a missing record into a
// released record with the removed volume's head, can no longer hand
// that head to a volume created meanwhile: of the two conditional
// writes, one fails. A record that exists is left alone (the caller
// reads it again and decides); Claim does not say who wrote it.
func (m *Manager) Claim(ctx context.Context, volume string) error {
	return m.rewrite(ctx, volume, func(o Observation) (*Record, error) {
		if o.Exists {
			return nil, nil
		}
		return &Record{Version: RecordVersion, Volume: volume, State: Released, Owner: m.host}, nil
	})
}
