package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/transfer"
)

// cas writes data as the volume's head record in place of the version
// with ETag prev, or creates it if prev is "". It returns the record the
// store holds afterwards: data itself if the write was applied, otherwise
// the record that won (Exists false if there is none).
//
// A lost response is settled by reading the record back: every record is
// unique (seq and nonce), so finding data there proves the write applied,
// and finding the old version proves it has not (yet), so the same bytes
// are sent again; a delayed copy of an earlier attempt can then apply at
// most once, because both are conditional on the same version. When the
// outcome cannot be settled cas returns an error; the caller remembers
// data as an unsettled write of its own.
func (m *Manager) cas(ctx context.Context, volume, prev string, data []byte) (Observation, error) {
	key := m.key(volume)
	var lastErr error
	for attempt := 1; ; attempt++ {
		var etag string
		var err error
		if prev == "" {
			etag, err = m.store.PutIfAbsent(ctx, key, data)
		} else {
			etag, err = m.store.PutIfMatch(ctx, key, data, prev)
		}
		if err == nil {
			return m.wrote(volume, data, etag)
		}
		precondition := errors.Is(err, transfer.ErrPrecondition)
		if !precondition && !transfer.Retryable(err) {
			return Observation{}, unsettled(volume, key, err)
		}
		lastErr = err
		cur, lerr := m.load(ctx, volume)
		if lerr != nil {
			return Observation{}, unsettled(volume, key, errors.Join(lastErr, lerr))
		}
		if cur.Exists && bytes.Equal(cur.data, data) {
			return cur, nil
		}
		unchanged := (prev == "" && !cur.Exists) || (prev != "" && cur.Exists && cur.ETag == prev)
		if precondition || !unchanged {
			return cur, nil
		}
		if attempt == maxAttempts {
			return Observation{}, unsettled(volume, key, lastErr)
		}
		if err := sleep(ctx, m.clock, jitter(100*time.Millisecond<<(attempt-1))); err != nil {
			return Observation{}, unsettled(volume, key, errors.Join(lastErr, err))
		}
	}
}

// wrote records our own successful write as the current sighting.
func (m *Manager) wrote(volume string, data []byte, etag string) (Observation, error) {
	rec, err := Decode(data)
	if err != nil {
		return Observation{}, err // cannot happen: data came from Encode
	}
	now := m.clock.Now()
	m.mu.Lock()
	m.seen[volume] = sighting{etag: etag, first: now}
	m.mu.Unlock()
	return Observation{Volume: volume, Exists: true, Record: rec, ETag: etag, TTL: max(m.ttl, rec.TTL()), data: data}, nil
}

func unsettled(volume, key string, err error) error {
	return fmt.Errorf("volume %q: writing %s: the outcome is unknown, retry the operation: %w", volume, key, err)
}
