package lease

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// Lease is this host's ownership of one volume at one generation. Its
// methods are safe for concurrent use (KeepAlive renews while the driver
// publishes); writes are serialized. Once fenced or released it refuses
// every write.
type Lease struct {
	m      *Manager
	volume string
	gen    uint64 // constant: a Lease never changes generation

	mu        sync.Mutex
	rec       Record
	etag      string
	unsettled [][]byte      // our writes whose outcome is unknown
	renewed   time.Duration // clock reading when the last write known applied was sent
	fenced    *FencedError
	released  bool
}

func (m *Manager) newLease(o Observation, sent time.Duration) *Lease {
	return &Lease{m: m, volume: o.Volume, gen: o.Record.Generation, rec: o.Record, etag: o.ETag, renewed: sent}
}

// Volume returns the volume name.
func (l *Lease) Volume() string { return l.volume }

// Generation returns the generation this lease holds: the fencing token
// that snapshot manifests record.
func (l *Lease) Generation() uint64 { return l.gen }

// Head returns the last published snapshot ID ("" if none): after an
// acquisition, the snapshot to restore.
func (l *Lease) Head() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Head
}

// TookOver describes the host this lease was taken from, or is nil if it
// was acquired without taking over.
func (l *Lease) TookOver() *Takeover {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.rec.Takeover; t != nil {
		c := *t
		return &c
	}
	return nil
}

// Renew proves ownership again, resetting the TTL. A *FencedError means
// another host holds the volume now.
func (l *Lease) Renew(ctx context.Context) error {
	return l.write(ctx, "renew", func(*Record) {})
}

// Publish makes snapshotID the volume's head: upload the snapshot's
// objects first, then publish. It fails with a *FencedError, and the
// snapshot stays invisible, if this host no longer holds the lease. A
// successful publish also renews.
func (l *Lease) Publish(ctx context.Context, snapshotID string) error {
	if err := CheckSnapshotID(snapshotID); err != nil {
		return fmt.Errorf("volume %q: publish: %w", l.volume, err)
	}
	return l.write(ctx, "publish", func(r *Record) {
		r.Head, r.HeadGeneration = snapshotID, r.Generation
	})
}

// Release gives the volume up; publish the final snapshot first. Releasing
// twice is not an error.
func (l *Lease) Release(ctx context.Context) error {
	return l.write(ctx, "release", func(r *Record) { r.State = Released })
}

// write changes the record by mutate, as the successor of the version
// this lease last wrote.
func (l *Lease) write(ctx context.Context, op string, mutate func(*Record)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced != nil {
		f := *l.fenced
		f.Op = op
		return &f
	}
	for {
		if l.released {
			if op == "release" {
				return nil
			}
			return fmt.Errorf("volume %q: %s: generation %d was released: %w; acquire the volume again", l.volume, op, l.rec.Generation, ErrReleased)
		}
		next := l.rec
		mutate(&next)
		next.Seq, next.Nonce, next.Renewed, next.TTLMS = l.rec.Seq+1, newNonce(), time.Now().UTC(), l.m.ttl.Milliseconds()
		data, err := Encode(next)
		if err != nil {
			return fmt.Errorf("volume %q: %s: %w", l.volume, op, err)
		}
		sent := l.m.clock.Now()
		cur, err := l.m.cas(ctx, l.volume, l.etag, data)
		if err != nil {
			l.unsettled = append(l.unsettled, data)
			return fmt.Errorf("%s: %w", op, err)
		}
		if bytes.Equal(cur.data, data) {
			l.rec, l.etag, l.unsettled, l.renewed = next, cur.ETag, nil, sent
			l.released = next.State == Released
			return nil
		}
		if cur.Exists && l.isUnsettled(cur.data) {
			// An earlier write of ours applied after all: continue from it.
			l.rec, l.etag, l.unsettled = cur.Record, cur.ETag, nil
			l.released = l.rec.State == Released
			continue
		}
		if l.releaseLanded(cur) {
			// Our release applied, and the volume went on from there.
			l.rec.State, l.etag, l.unsettled, l.released = Released, "", nil, true
			continue
		}
		l.fenced = &FencedError{Volume: l.volume, Host: l.m.host, Generation: l.rec.Generation, Head: l.rec.Head, Op: op}
		if cur.Exists {
			c := cur.Record
			l.fenced.Current = &c
		}
		f := *l.fenced
		return &f
	}
}

// Settle finds out what became of this lease's writes whose outcome is
// unknown (a call cancelled or timed out after its write was sent), so that
// the holder acts on neither belief, "I hold" or "I released", before it
// knows. With nothing unknown it returns at once without reading the
// store. Otherwise it renews on top of the version this lease last knew:
// that settles every earlier write for good, since a late copy of one is
// conditional on a version that is then gone.
//
// It returns nil if the lease is held (an unknown publish that applied is
// taken as published: see Head), an error matching ErrReleased if a
// release of ours applied (whoever acquired the volume since), or a
// *FencedError if another host took the volume from this lease.
func (l *Lease) Settle(ctx context.Context) error {
	l.mu.Lock()
	unknown := len(l.unsettled) > 0 || l.released || l.fenced != nil
	l.mu.Unlock()
	if !unknown {
		return nil
	}
	return l.write(ctx, "settle", func(*Record) {})
}

// releaseLanded reports whether cur, a record none of this lease's writes
// made, can only exist because an unsettled release of ours applied: the
// volume went on from our generation through a released state
// (releasedSince). Records two or more generations on prove nothing.
func (l *Lease) releaseLanded(cur Observation) bool {
	return cur.Exists && l.releaseUnsettled() && releasedSince(cur.Record, l.gen)
}

// releasedSince reports whether record r proves that generation gen was
// released by its holder: r is gen itself, no longer held (only a released
// generation can be removed, and revived or undeleted after that), or the
// next generation, acquired without a takeover (so from gen released),
// held or removed. A released gen+1 proves nothing: Revive and Undelete
// clear the takeover note without changing the generation.
func releasedSince(r Record, gen uint64) bool {
	switch r.Generation {
	case gen:
		return r.State != Held
	case gen + 1:
		return r.Takeover == nil && r.State != Released
	}
	return false
}

// releaseUnsettled reports whether one of the unsettled writes is a release.
func (l *Lease) releaseUnsettled() bool {
	for _, u := range l.unsettled {
		if r, err := Decode(u); err == nil && r.State == Released {
			return true
		}
	}
	return false
}

func (l *Lease) isUnsettled(data []byte) bool {
	for _, u := range l.unsettled {
		if bytes.Equal(u, data) {
			return true
		}
	}
	return false
}
