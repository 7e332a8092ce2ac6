package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/internal/volname"
)

// attempt says what an acquisition may do with a lease held by another.
type attempt struct {
	op    string // "" (acquire), "takeover" or "remove": for HeldError
	take  bool   // take over a lease observed expired
	force bool   // take over even a live lease
}

// maxRounds bounds how often one call re-reads after losing a race.
const maxRounds = 8

// Acquire takes the volume if nobody holds it: a missing record is created
// at generation 1, a released one becomes held by this host at the next
// generation (keeping its head). If another host holds it, Acquire returns
// a *HeldError at once (matching ErrExpired too if this host has seen the
// record unchanged for a full TTL); a removed volume yields ErrRemoved. A
// lease of this host's id that this host has seen unchanged for a full TTL
// is taken over (a run that died before recording it: see Crash recovery
// in the package doc).
func (m *Manager) Acquire(ctx context.Context, volume string) (*Lease, error) {
	return m.try(ctx, volume, attempt{})
}

// WaitOptions tune WaitAcquire.
type WaitOptions struct {
	// Wait is how long to wait for another host to release (0: try once).
	Wait time.Duration
	// AutoTakeover takes over a lease this host has seen unchanged for a
	// full TTL (-o takeover=auto). Without it an expired lease fails at once.
	AutoTakeover bool
}

// WaitAcquire is Acquire that keeps trying while another host holds the
// volume, for up to o.Wait: every PollInterval (jittered), five times as
// often for the first ten PollIntervals and then slowing down by half
// each time, since a planned move releases within a second or two of the
// new host starting to wait (the handoff bench: A released 1.2 s after B
// began to wait, and B, its interval grown to 500 ms, saw it 0.59 s
// later; a look costs one GET of a small record). What this host saw
// is remembered across calls, so a lease can expire over several calls
// each shorter than the TTL.
func (m *Manager) WaitAcquire(ctx context.Context, volume string, o WaitOptions) (*Lease, error) {
	return m.wait(ctx, volume, o.Wait, attempt{take: o.AutoTakeover}, nil)
}

// TakeoverOptions tune Takeover.
type TakeoverOptions struct {
	// Force takes the volume even while its lease is live. Whatever the
	// holder writes from then on is lost; use it only for a host known dead.
	Force bool
	// Wait is how long to watch a live lease for it to expire (or be
	// released). A process that has just started must watch a full TTL.
	Wait time.Duration
	// Progress, if set, is called after each look at a live lease.
	Progress func(*HeldError)
}

// Takeover takes the volume from a host that stopped renewing: allowed once
// this host has seen the record unchanged for a full TTL by its own clock,
// or at once with Force. It bumps the generation, so the old holder can no
// longer publish; the new lease's Head is the last published snapshot and
// TookOver names the old holder. A released or missing record is simply
// acquired. Refusal is a *HeldError.
func (m *Manager) Takeover(ctx context.Context, volume string, o TakeoverOptions) (*Lease, error) {
	return m.wait(ctx, volume, o.Wait, attempt{op: "takeover", take: true, force: o.Force}, o.Progress)
}

// fastPolls is how many PollIntervals a wait polls five times as often.
const fastPolls = 10

func (m *Manager) wait(ctx context.Context, volume string, wait time.Duration, a attempt, progress func(*HeldError)) (*Lease, error) {
	start := m.clock.Now()
	interval := max(m.poll/5, 1)
	for {
		l, err := m.try(ctx, volume, a)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		waited := m.clock.Now() - start
		if progress != nil {
			progress(held)
		}
		if held.Expired() && !a.take || waited >= wait {
			held.Waited = waited
			return nil, held
		}
		if err := sleep(ctx, m.clock, min(jitter(interval), wait-waited)); err != nil {
			held.Waited = m.clock.Now() - start
			return nil, fmt.Errorf("%w (gave up: %w)", held, err)
		}
		if waited >= fastPolls*m.poll {
			interval = min(interval*3/2, m.poll)
		}
	}
}

// try makes one acquisition, re-reading when it loses a race.
func (m *Manager) try(ctx context.Context, volume string, a attempt) (*Lease, error) {
	if err := volname.Check(volume); err != nil {
		return nil, err
	}
	for range maxRounds {
		o, err := m.load(ctx, volume)
		if err != nil {
			return nil, err
		}
		if p, ok := m.adoptable(o); ok {
			return m.newLease(o, p.sent), nil
		}
		next, err := m.successor(o, a)
		if err != nil {
			return nil, err
		}
		data, err := Encode(next)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", volume, err)
		}
		sent := m.clock.Now()
		cur, err := m.cas(ctx, volume, o.ETag, data)
		if err != nil {
			m.addPending(volume, pending{data: data, sent: sent})
			return nil, err
		}
		if bytes.Equal(cur.data, data) {
			m.clearPending(volume)
			return m.newLease(cur, sent), nil
		}
		if p, ok := m.adoptable(cur); ok {
			return m.newLease(cur, p.sent), nil
		}
	}
	return nil, fmt.Errorf("volume %q: the head record kept changing while acquiring it; retry", volume)
}

// adoptable reports whether o is an acquisition of ours whose outcome was
// unknown: then it is our lease.
func (m *Manager) adoptable(o Observation) (pending, bool) {
	if !o.Exists || o.Record.State != Held || o.Record.Owner != m.host {
		return pending{}, false
	}
	return m.takePending(o.Volume, o.data)
}

// successor returns the record an acquisition writes over o, or the reason
// it may not.
func (m *Manager) successor(o Observation, a attempt) (Record, error) {
	next := Record{Version: RecordVersion, Volume: o.Volume, State: Held, Owner: m.host, Generation: 1, Seq: 1, TTLMS: m.ttl.Milliseconds()}
	if !o.Exists {
		next.Nonce, next.Renewed = newNonce(), time.Now().UTC()
		return next, nil
	}
	r := o.Record
	switch r.State {
	case Removed:
		return Record{}, removedError(o.Volume, r.Owner)
	case Held:
		// A lease of this host's id that this host has seen unchanged for
		// a full TTL is an acquisition whose process died before it could
		// record the generation (no live process of ours renews it): it is
		// taken over like any expired lease, without -o takeover=auto,
		// else nobody could mount the volume until a takeover by hand. A
		// live lease of our id is refused like anyone's: a process that
		// still renews it changes the record (and the takeover's CAS on
		// the ETag seen fails if it renews meanwhile).
		orphan := r.Owner == m.host && o.Expired()
		if !orphan && !(a.take && (a.force || o.Expired())) {
			return Record{}, &HeldError{
				Volume: o.Volume, Owner: r.Owner, Generation: r.Generation, Head: r.Head,
				Self: r.Owner == m.host, Unchanged: o.Unchanged, TTL: o.TTL, Op: a.op,
			}
		}
		next.Takeover = &Takeover{From: r.Owner, Generation: r.Generation, Forced: !o.Expired(), UnchangedMS: o.Unchanged.Milliseconds()}
	}
	next.Generation, next.Head, next.HeadGeneration = r.Generation+1, r.Head, r.HeadGeneration
	next.Seq, next.Nonce, next.Renewed = r.Seq+1, newNonce(), time.Now().UTC()
	return next, nil
}

func removedError(volume, by string) error {
	return fmt.Errorf("volume %q was removed by host %q: %w; create it again to reuse the name", volume, by, ErrRemoved)
}

// Resume continues a lease this host held before it restarted, at the
// generation it recorded. It renews at once, so success proves ownership.
// If the generation was released meanwhile (the release applied before the
// crash) it returns ErrReleased, also when the record has gone on from
// that release (see Lease.Settle); if anything else holds the record now,
// a *FencedError.
func (m *Manager) Resume(ctx context.Context, volume string, generation uint64) (*Lease, error) {
	if err := volname.Check(volume); err != nil {
		return nil, err
	}
	o, err := m.load(ctx, volume)
	if err != nil {
		return nil, err
	}
	r := o.Record
	if o.Exists && r.Owner == m.host && r.Generation == generation && r.State == Held {
		l := m.newLease(o, m.clock.Now()-m.ttl) // unknown: assume lapsed until renewed
		if err := l.Renew(ctx); err != nil {
			return nil, err
		}
		return l, nil
	}
	if o.Exists && releasedSince(r, generation) {
		// Only this host, the holder, can have released it (the release
		// applied before the crash), even if the volume went on since.
		return nil, fmt.Errorf("volume %q: generation %d was already released by this host (the record is now %s at generation %d, head %q): %w", volume, generation, r.State, r.Generation, r.Head, ErrReleased)
	}
	f := &FencedError{Volume: volume, Host: m.host, Generation: generation, Op: "resume"}
	if o.Exists {
		f.Current = &r
	}
	return nil, f
}
