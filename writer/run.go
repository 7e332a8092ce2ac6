package writer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// DefaultReleaseTimeout bounds giving the lease back after the work,
// which runs even when the caller's context has ended (SIGINT).
const DefaultReleaseTimeout = 30 * time.Second

// How says how Run came to hold the lease.
type How string

// The ways Acquire takes a lease.
const (
	Acquired How = "acquired"  // the volume was free
	Resumed  How = "resumed"   // a dead earlier run on this host held it: proven by the claim, continued at its generation
	TookOver How = "took over" // this host id held it unproven: taken once seen unchanged for a full TTL
)

// Options configure Run and Acquire.
type Options struct {
	Leases *lease.Manager
	Volume string
	// Claim, if set, is this process's local claim on the volume (see
	// Claim): with it a lease that a dead earlier run on this host left
	// held is continued at once. Without it, or when the claim cannot
	// prove it, a lease held by this host id is taken only after it has
	// been seen unchanged for a full TTL. Leases should write through
	// Claim.Watch, so that a run killed while taking the lease is proven
	// too.
	Claim *Claim
	// ReleaseTimeout bounds the release (default DefaultReleaseTimeout).
	ReleaseTimeout time.Duration
	// Notify, if set, hears what Run is waiting for, for people.
	Notify func(string)
	// Observe, if set, is called when the lease is taken (held true) and
	// just before the release is sent (held false): between the two this
	// process acts as the volume's only writer.
	Observe func(volume string, generation uint64, held bool)
}

// Outcome says what Run did with the lease.
type Outcome struct {
	Generation uint64
	How        How
	// Head is the volume's head once the lease was given back (or as
	// last known, if the release failed).
	Head string
	// ReleaseErr is why the lease could not be given back; the lease is
	// then left held at Generation, and a re-run on this host with the
	// same claim directory continues it at once.
	ReleaseErr error
}

// Run is the one orchestration of a writer that takes a volume for one
// job (portvol import): acquire the lease (or continue a dead earlier
// run's, see Acquire), renew it while fn runs (fn's context ends if the
// lease is lost), and give it back afterwards on every path, also when
// ctx has ended. fn publishes through Snapshot, which writes the head only
// while the lease is still ours. The error is the acquisition's or fn's;
// the release's is Outcome.ReleaseErr.
func Run(ctx context.Context, o Options, fn func(context.Context, *lease.Lease) error) (Outcome, error) {
	l, how, err := Acquire(ctx, o)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Generation: l.Generation(), How: how}
	if o.Observe != nil {
		o.Observe(o.Volume, l.Generation(), true)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	kaDone := make(chan struct{})
	go func() {
		defer close(kaDone)
		if err := l.KeepAlive(cctx, nil); err != nil {
			cancel(err) // fenced: stop working, publishing would fail
		}
	}()
	err = fn(cctx, l)
	if cause := context.Cause(cctx); err != nil && errors.Is(cause, lease.ErrFenced) {
		err = cause
	}
	cancel(nil)
	<-kaDone
	if o.Observe != nil {
		o.Observe(o.Volume, l.Generation(), false)
	}
	timeout := o.ReleaseTimeout
	if timeout <= 0 {
		timeout = DefaultReleaseTimeout
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer rcancel()
	out.ReleaseErr = l.Release(rctx)
	if errors.Is(out.ReleaseErr, lease.ErrFenced) && errors.Is(err, lease.ErrFenced) {
		out.ReleaseErr = nil // nothing to give back; err says so
	}
	out.Head = l.Head()
	if out.ReleaseErr == nil && o.Claim != nil {
		// If this fails the claim still says "held": the next run finds
		// the generation released and simply acquires.
		_ = o.Claim.record(claimReleased, l.Generation())
	}
	return out, err
}

// Acquire takes o.Volume's lease for a writer:
//
//   - if o.Claim shows that a dead earlier run held generation G and the
//     store still shows G held by this host id, that lease is continued
//     (lease.Manager.Resume renews it at once, so it is proven ours and no
//     delayed write of the dead run can apply after);
//   - if the store shows this host id holding it otherwise (no claim, a
//     run killed between taking the lease and recording it, another
//     process or host with this id), it is watched for up to a TTL: taken
//     over once seen unchanged for a full TTL, refused if it is renewed;
//   - otherwise as lease.Manager.Acquire: a lease another host holds is
//     refused with a *lease.HeldError.
//
// The claim records the generation before Acquire returns.
func Acquire(ctx context.Context, o Options) (*lease.Lease, How, error) {
	lm, volume, c := o.Leases, o.Volume, o.Claim
	if p := c.Prior(); c != nil && p.Generation > 0 && (p.State == claimHeld || p.State == claimAcquiring && p.Nonce != "") {
		obs, err := lm.Inspect(ctx, volume)
		if err != nil {
			return nil, "", err
		}
		r := obs.Record
		// "held" proves the generation the dead run's; "acquiring" proves
		// the exact record it sent, if nothing was written since.
		if obs.Exists && r.State == lease.Held && r.Owner == lm.Host() && r.Generation == p.Generation && (p.State == claimHeld || r.Nonce == p.Nonce) {
			if err := c.record(claimHeld, p.Generation); err != nil {
				return nil, "", err
			}
			l, err := lm.Resume(ctx, volume, p.Generation)
			switch {
			case err == nil:
				return l, Resumed, nil
			case errors.Is(err, lease.ErrReleased), errors.Is(err, lease.ErrFenced):
				// Released or taken meanwhile: acquire as usual.
			default:
				return nil, "", err
			}
		}
	}
	if c != nil {
		// Before the write whose answer may never come: a run killed now
		// leaves "acquiring", and the store from Watch adds the exact
		// record each attempt sends.
		if err := c.record(claimAcquiring, 0); err != nil {
			return nil, "", err
		}
		c.acquiring.Store(true)
		defer c.acquiring.Store(false)
	}
	how := Acquired
	l, err := lm.Acquire(ctx, volume)
	// A store failure may have hidden an applied acquisition: trying
	// again settles it (the Manager recognises its own pending write and
	// adopts it) before the run gives up, leaving nothing held unknowingly.
	for wait := 200 * time.Millisecond; unknownOutcome(err) && ctx.Err() == nil && wait <= time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			l, err = lm.Acquire(ctx, volume)
		}
	}
	var held *lease.HeldError
	if errors.As(err, &held) && held.Owner == lm.Host() {
		how = TookOver
		l, err = waitOwn(ctx, o, held)
	}
	if err != nil {
		return nil, "", err
	}
	if c != nil {
		if err := c.record(claimHeld, l.Generation()); err != nil {
			// Without the record a crash would make the next run wait a
			// TTL; give the lease back rather than run unrecorded.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultReleaseTimeout)
			defer cancel()
			return nil, "", errors.Join(err, l.Release(rctx))
		}
	}
	return l, how, nil
}

// unknownOutcome reports whether err is a store failure that may hide an
// applied write, rather than an answer (held, removed, a bad record).
func unknownOutcome(err error) bool {
	var held *lease.HeldError
	return err != nil && !errors.As(err, &held) && !errors.Is(err, lease.ErrRemoved) &&
		!errors.Is(err, lease.ErrCorrupt) && !errors.Is(err, lease.ErrVersion) && transfer.Retryable(err)
}

// waitOwn watches a lease held by this host id that no claim proves dead,
// for up to a TTL and a little more: taken over once seen unchanged for a
// full TTL, refused while it is renewed or once another host holds it.
func waitOwn(ctx context.Context, o Options, held *lease.HeldError) (*lease.Lease, error) {
	lm, volume := o.Leases, o.Volume
	if o.Notify != nil {
		o.Notify(fmt.Sprintf("volume %q is held by this host id %q at generation %d, and no run on this host is known to hold it (a run was killed, or another process uses this id): watching it for up to %s; if nobody renews it, it is taken over",
			volume, lm.Host(), held.Generation, fmtDur(held.TTL)))
	}
	poll := min(lease.DefaultPollInterval, max(time.Millisecond, lm.TTL()/8))
	start := time.Now()
	for {
		obs, err := lm.Inspect(ctx, volume)
		if err != nil {
			return nil, err
		}
		if !obs.Exists || obs.Record.State != lease.Held || obs.Record.Owner != lm.Host() {
			return lm.Acquire(ctx, volume) // released meanwhile, or another host's: as usual
		}
		if obs.Expired() {
			// Takeover judges the same sighting: if the record changed
			// since, it is fresh again and refused.
			return lm.Takeover(ctx, volume, lease.TakeoverOptions{})
		}
		if time.Since(start) > obs.TTL+4*poll {
			return nil, fmt.Errorf("volume %q: %w; it is renewed, so a live process holds it: if that is another import, wait for it; if another host uses the id %q, give each host its own --host-id",
				volume, &lease.HeldError{Volume: volume, Owner: obs.Record.Owner, Generation: obs.Record.Generation, Head: obs.Record.Head,
					Self: true, Unchanged: obs.Unchanged, TTL: obs.TTL, Waited: time.Since(start)}, lm.Host())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("volume %q: waiting for the lease of this host id to expire: %w", volume, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// fmtDur prints d rounded for people.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
