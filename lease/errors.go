package lease

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of them (or a
// transfer error) together with the volume and what to do.
var (
	// ErrHeld: another host (or another process with this host's id) holds
	// the lease. Returned as a *HeldError.
	ErrHeld = errors.New("lease held by another host")

	// ErrExpired: the holder has not changed the record for a full TTL as
	// seen by this host. Matched by a *HeldError whose Expired is true.
	ErrExpired = errors.New("lease expired")

	// ErrFenced: this host no longer owns the lease it had. Returned as a
	// *FencedError; the Lease refuses every further write.
	ErrFenced = errors.New("lease lost (fenced)")

	// ErrReleased: the lease was released; acquire the volume again.
	ErrReleased = errors.New("lease released")

	// ErrRemoved: the volume's head record is a removal tombstone.
	ErrRemoved = errors.New("volume removed")

	// ErrCorrupt: the stored head record is malformed.
	ErrCorrupt = errors.New("corrupt head record")

	// ErrVersion: the stored head record has a newer format version.
	ErrVersion = errors.New("unsupported head record version")
)

// HeldError reports a lease held by someone else.
type HeldError struct {
	Volume     string
	Owner      string        // host id of the holder
	Generation uint64        // the holder's generation
	Head       string        // last published snapshot, "" if none
	Self       bool          // the holder has this host's id, but this process holds no lease
	Unchanged  time.Duration // how long this host has seen the record unchanged
	TTL        time.Duration
	Waited     time.Duration // how long the call waited for a release
	Op         string        // the refused operation: "" (acquire), "takeover" or "remove"
}

// Expired reports whether this host has seen the record unchanged for a full TTL.
func (e *HeldError) Expired() bool { return e.Unchanged >= e.TTL }

// Is makes a HeldError match ErrHeld, and ErrExpired once expired.
func (e *HeldError) Is(target error) bool {
	return target == ErrHeld || (target == ErrExpired && e.Expired())
}

func (e *HeldError) Error() string {
	holder := fmt.Sprintf("host %q", e.Owner)
	if e.Self {
		holder = fmt.Sprintf("this host's id %q", e.Owner)
	}
	still := "is"
	if e.Waited > 0 {
		still = "is still"
	}
	msg := fmt.Sprintf("volume %q %s held by %s", e.Volume, still, holder)
	if e.Waited > 0 {
		msg += " after waiting " + fmtDur(e.Waited)
	}
	age := fmt.Sprintf("unchanged for %s of a %s lease", fmtDur(e.Unchanged), fmtDur(e.TTL))
	switch {
	case e.Op == "remove":
		return fmt.Sprintf("%s (generation %d, %s): cannot remove a volume in use; unmount it there first, "+
			"or if %s is gone run: portvol takeover %s",
			msg, e.Generation, age, e.Owner, e.Volume)
	case e.Op == "takeover" && !e.Expired():
		return fmt.Sprintf("%s (generation %d, %s): refusing to take over a live lease; "+
			"wait until it has been unchanged for %s, or if you are sure %s is gone run: portvol takeover --force %s",
			msg, e.Generation, age, fmtDur(e.TTL), e.Owner, e.Volume)
	case e.Self:
		return fmt.Sprintf("%s (generation %d, %s) but not by this process: a previous run crashed before recording it, "+
			"or another host uses the same host id; once it has been unchanged for %s this host takes it over by itself "+
			"(at its next Mount of the volume, or at the plugin's next recovery round, every minute), or run: portvol takeover %s",
			msg, e.Generation, age, fmtDur(e.TTL), e.Volume)
	case e.Expired():
		return fmt.Sprintf("%s (generation %d), which has not renewed it for %s (lease %s): %s looks gone; "+
			"to take the volume over run: portvol takeover %s (or mount with -o takeover=auto); %s",
			msg, e.Generation, fmtDur(e.Unchanged), fmtDur(e.TTL), e.Owner, e.Volume, lossNote(e.Owner, e.Head))
	}
	return fmt.Sprintf("%s (generation %d, %s); wait for it to be released, or if %s is gone run: portvol takeover %s",
		msg, e.Generation, age, e.Owner, e.Volume)
}

// lossNote says what a takeover from host loses.
func lossNote(host, head string) string {
	if head == "" {
		return fmt.Sprintf("nothing %s wrote is kept, it never published a snapshot", host)
	}
	return fmt.Sprintf("whatever %s wrote after snapshot %q is lost", host, head)
}

// FencedError reports that this host lost a lease it held: another host
// took it over, or the record changed in a way this host did not write.
type FencedError struct {
	Volume     string
	Host       string  // this host
	Generation uint64  // the generation this host held
	Head       string  // the last snapshot this host knows is published
	Op         string  // the refused operation: renew, publish, release
	Current    *Record // the record found in the store, nil if it is gone
}

// Is makes a FencedError match ErrFenced.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

func (e *FencedError) Error() string {
	now := "its head record is gone"
	if c := e.Current; c != nil {
		switch c.State {
		case Held:
			now = fmt.Sprintf("host %q now holds generation %d", c.Owner, c.Generation)
		case Released:
			now = fmt.Sprintf("it is now released at generation %d by host %q", c.Generation, c.Owner)
		case Removed:
			now = fmt.Sprintf("it was removed by host %q", c.Owner)
		}
	}
	kept := "its unpublished changes are not in the store"
	if e.Head != "" {
		kept = fmt.Sprintf("its changes after snapshot %q are not in the store", e.Head)
	}
	return fmt.Sprintf("volume %q: %s refused: host %q lost ownership (it held generation %d; %s); "+
		"stop writing to this copy and keep it aside, %s", e.Volume, e.Op, e.Host, e.Generation, now, kept)
}

// fmtDur prints d rounded for people: 12s, 1m5s, 300ms.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
