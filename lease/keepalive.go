package lease

import (
	"context"
	"errors"
	"time"
)

// Status is a lease as its holder sees it, for status output.
type Status struct {
	Volume     string
	Host       string
	Generation uint64
	Head       string        // last published snapshot
	SinceRenew time.Duration // since the last successful write was sent, by this host's clock
	Lapsed     bool          // renewals failed long enough that other hosts may see it expired
	Released   bool
	Fenced     error     // the *FencedError once this host lost the lease
	Takeover   *Takeover // the host this lease was taken from, if any
}

// Status reports the lease's state without touching the store.
func (l *Lease) Status() Status {
	took := l.TookOver()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Status{
		Volume: l.volume, Host: l.m.host, Generation: l.rec.Generation, Head: l.rec.Head,
		SinceRenew: l.m.clock.Now() - l.renewed, Released: l.released, Takeover: took,
	}
	s.Lapsed = !s.Released && s.SinceRenew >= l.m.lapseAfter()
	if l.fenced != nil {
		f := *l.fenced
		s.Fenced = &f
	}
	return s
}

// lapseAfter is how long after sending its last successful renewal a
// holder must assume other hosts may see its lease expired. The 10% margin
// absorbs clocks that run at slightly different rates.
func (m *Manager) lapseAfter() time.Duration { return m.ttl - m.ttl/10 }

// KeepAlive renews the lease every TTL/3 (counted from the last successful
// write, so publishes count) until ctx is done or the lease was released,
// returning nil, or until it finds the lease fenced, returning the
// *FencedError. Transient store errors do not end it: it retries every
// TTL/15 and calls notify(err, lapsed) after each failure, where lapsed
// says that renewals have failed for so long that other hosts may see the
// lease expired; after the first success that follows failures it calls
// notify(nil, false). notify may be nil. A lapsed lease is not lost: if no
// host took it over, the next renewal succeeds and ownership continues.
func (l *Lease) KeepAlive(ctx context.Context, notify func(err error, lapsed bool)) error {
	return l.KeepAliveWhile(ctx, nil, notify)
}

// KeepAliveWhile is KeepAlive that calls valid before every renewal and
// stops, returning valid's error, once it fails: the holder ties the
// renewals to its own record of the lease, so that a lease nothing on this
// host knows any more (its volume removed, or its record replaced by a
// newer volume of that name) is never renewed and can expire. valid may be
// nil.
func (l *Lease) KeepAliveWhile(ctx context.Context, valid func() error, notify func(err error, lapsed bool)) error {
	if notify == nil {
		notify = func(error, bool) {}
	}
	clock, ttl := l.m.clock, l.m.ttl
	failing := false
	for {
		wait := jitter(ttl / 15)
		if !failing {
			wait = ttl/3 - l.sinceWrite()
		}
		if sleep(ctx, clock, wait) != nil {
			return nil
		}
		if !failing && l.sinceWrite() < ttl/3 {
			continue // a publish renewed it meanwhile
		}
		if valid != nil {
			if err := valid(); err != nil {
				return err
			}
		}
		err := l.Renew(ctx)
		switch {
		case err == nil:
			if failing {
				failing = false
				notify(nil, false)
			}
		case errors.Is(err, ErrFenced):
			return err
		case errors.Is(err, ErrReleased), ctx.Err() != nil:
			return nil
		default:
			failing = true
			notify(err, l.Status().Lapsed)
		}
	}
}

// sinceWrite is the time since the last successful write was sent.
func (l *Lease) sinceWrite() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.clock.Now() - l.renewed
}
