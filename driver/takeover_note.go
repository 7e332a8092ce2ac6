package driver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
)

// A takeover note names the last snapshot the lost host's data reaches:
// the head when the lease was taken. The head record keeps the takeover
// for the whole generation, but its head moves on as soon as the taker
// publishes, so the note cannot be written from the current head. Where
// the lost head comes from, in order:
//
//   - the head record, while its head was published at or before the
//     generation taken (HeadGeneration ≤ Takeover.Generation): nobody has
//     published since;
//   - this host's record, when this host took the volume: the note it
//     wrote at that moment (metadata.Volume.TakenOver);
//   - the snapshots' parents: every snapshot is created with the head of
//     its time as its parent, so walking back from the head to the first
//     snapshot of a generation up to the one taken finds it. The answer
//     never changes, so it is kept per volume and generation.
//
// If none of these answers (manifests pruned, store unreachable), the
// note says "its last published snapshot" without naming a wrong one.

// maxLostHeadWalk bounds the manifests read to find a lost head.
const maxLostHeadWalk = 32

// lostHeads caches the lost head of taken-over generations (key
// "<volume>@<generation>"), and for a while that it could not be found,
// so that Get, which dockerd calls constantly, does not walk every time.
type lostHeads struct {
	mu sync.Mutex
	m  map[string]lostHead
}

type lostHead struct {
	id    string
	found bool
	at    time.Time // when a failed walk may be tried again
}

// lostRetry is how long a walk that failed is not tried again.
const lostRetry = time.Minute

// takeoverText is the note for generation gen of name, taken over as t,
// whose head record now names head, published at headGen; rec is this
// host's own note ("" if none).
func (d *Driver) takeoverText(name string, gen uint64, t *lease.Takeover, head string, headGen uint64, own string) string {
	if headGen <= t.Generation {
		return takeoverNote(t, head)
	}
	if strings.HasPrefix(own, fmt.Sprintf("generation %d was taken over", gen)) {
		if i := strings.LastIndex(own, " ("); i > 0 {
			return own[:i] // without the time it was written
		}
		return own
	}
	if lost, ok := d.lostHead(name, t, head); ok {
		return takeoverNote(t, lost)
	}
	how := "after it stopped renewing"
	if t.Forced {
		how = "by force"
	}
	return fmt.Sprintf("generation %d was taken over from host %s %s: whatever %s wrote after its last published snapshot is gone", t.Generation+1, t.From, how, t.From)
}

// lostHead walks the parents of head back to the newest snapshot of a
// generation up to t.Generation: the head when the lease was taken ("" if
// there was none).
func (d *Driver) lostHead(name string, t *lease.Takeover, head string) (string, bool) {
	key := fmt.Sprintf("%s@%d", name, t.Generation+1)
	d.lost.mu.Lock()
	lost, ok := d.lost.m[key]
	d.lost.mu.Unlock()
	if ok && (lost.found || time.Now().Before(lost.at)) {
		return lost.id, lost.found
	}
	b := d.backend.Load()
	if b == nil {
		return "", false
	}
	id, found := d.walkLostHead(b, name, t, head)
	d.lost.mu.Lock()
	if d.lost.m == nil {
		d.lost.m = map[string]lostHead{}
	}
	d.lost.m[key] = lostHead{id: id, found: found, at: time.Now().Add(lostRetry)}
	d.lost.mu.Unlock()
	return id, found
}

func (d *Driver) walkLostHead(b *Backend, name string, t *lease.Takeover, head string) (string, bool) {
	ctx, cancel := context.WithTimeout(d.bg, viewTimeout)
	defer cancel()
	id := head
	for range maxLostHeadWalk {
		if id == "" {
			break
		}
		in, err := b.Snapshots.Info(ctx, name, id)
		if err != nil {
			d.log.WithField("volume", name).WithError(err).Debug("takeover note: cannot tell the lost host's last snapshot")
			return "", false
		}
		if in.Generation <= t.Generation {
			break
		}
		id = in.Parent
	}
	if id != "" {
		if in, err := b.Snapshots.Info(ctx, name, id); err != nil || in.Generation > t.Generation {
			return "", false // walked too far, or the walk stopped early
		}
	}
	return id, true
}
