package driver

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

// What the observer checks of the paths random_shape_test.go's knobs
// open:
//
//   - a Mount of a takeover=auto volume takes it over only from a holder
//     whose last write of its generation landed a full TTL before the
//     takeover's (it stopped renewing), and never by force; what the old
//     holder wrote after its last publication counts as cut off (kept on
//     it, checkCutWrites), as for portvol takeover;
//   - a host binds a volume for containers only inside a Mount of it (or
//     its start's reconcile): a standby host following a volume never
//     serves it;
//   - a standby host's copy never goes back to an older head snapshot;
//   - after a planned move to a standby host (a Mount there that acquired
//     the released lease), the copy holds exactly the head snapshot's
//     files;
//   - every new window (any host, btrfs or directories) holds every
//     acknowledged write, and at the end a btrfs host and a directory
//     host show each volume alike (checkVolume).

// leaseWrite is a write of a volume's lease record that landed.
type leaseWrite struct {
	host       int
	vol        string
	rec        lease.Record
	start, end time.Time // sent, answered by the store
}

// copySeen is the last snapshot a standby host's copy was seen at.
type copySeen struct {
	inc, snap string
	seq       uint64
}

func (h *rhost) kind() string {
	if h.copies != nil {
		return h.name + " (btrfs)"
	}
	return h.name + " (directories)"
}

func (o *robs) count(what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[what]++
}

// mounting counts Mount calls of vol under way on h (by d: 1 or -1).
func (o *robs) mounting(h *rhost, vol string, d int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight[hostVol{h.idx, vol}] += d
}

// bound is told of every bind mount h's process makes of vol for
// containers.
func (o *robs) bound(h *rhost, vol string) {
	if h.starting.Load() {
		return // the reconcile at start puts back the binds of mounted volumes
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight[hostVol{h.idx, vol}] == 0 {
		what := "a pull or a restore"
		if o.r.standbyOf(h, vol) {
			what = "a standby host following it"
		}
		o.problems = append(o.problems, fmt.Sprintf("%s bound %s for containers at %.3fs with no Mount of it under way: %s must never serve a volume",
			h.name, vol, time.Since(o.r.start).Seconds(), what))
	}
}

// leaseWritten records a lease write that landed.
func (o *robs) leaseWritten(w leaseWrite) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lwrites = append(o.lwrites, w)
	if t := w.rec.Takeover; t != nil && w.rec.State == lease.Held {
		o.takeoverLandedLocked(w, t)
	}
	if head := w.rec.Head; head != "" {
		seqs := o.headSeq[w.vol]
		if seqs == nil {
			seqs = map[string]uint64{}
			o.headSeq[w.vol] = seqs
		}
		if _, ok := seqs[head]; !ok {
			seqs[head] = w.rec.Seq
			o.n["published"]++
			if o.r.hosts[w.host].copies != nil {
				o.n["btrfs published"]++
			}
		}
	}
}

// lastWriteLocked is when the last lease write of the generation that t
// took over was sent by its holder (zero if none was seen).
func (o *robs) lastWriteLocked(from int, vol string, t *lease.Takeover) time.Time {
	var last time.Time
	for _, lw := range o.lwrites {
		if lw.host == from && lw.vol == vol && lw.rec.Owner == t.From && lw.rec.Generation == t.Generation && lw.start.After(last) {
			last = lw.start
		}
	}
	return last
}

// takeoverLandedLocked records a takeover from the write that made it,
// whichever call sent it: a Mount whose answer a fault lost, or one that
// gave the lease back at once, took the volume over all the same, and the
// old holder's windows end there. Unless forced, the old holder's last
// write of that generation must have been sent a full TTL before.
func (o *robs) takeoverLandedLocked(w leaseWrite, t *lease.Takeover) {
	from := -1
	for _, c := range o.r.hosts {
		if c.name == t.From {
			from = c.idx
		}
	}
	for _, tk := range o.taken {
		if tk.vol == w.vol && tk.host == from && tk.gen == t.Generation {
			return
		}
	}
	if from < 0 {
		return // tookOverLocked and takenOverLocked report unknown hosts
	}
	if !t.Forced {
		last := o.lastWriteLocked(from, w.vol, t)
		if gap := w.end.Sub(last); !last.IsZero() && gap < o.r.cfg.ttl {
			o.problems = append(o.problems, fmt.Sprintf("%s took generation %d of %s over from %s at %.3fs without force, but %s's last write of it was sent only %s before (lease TTL %s): it had not stopped renewing",
				o.r.hosts[w.host].name, t.Generation, w.vol, t.From, w.end.Sub(o.r.start).Seconds(), t.From, gap.Round(time.Millisecond), o.r.cfg.ttl))
		}
	}
	o.takenOverLocked(w.vol, t.From, t.Generation, w.start, w.end)
	o.taken[len(o.taken)-1].landed = true
}

// undeleted: vol came back from the trash, with an older head maybe.
func (o *robs) undeleted(vol string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forgetCopiesLocked(vol)
}

func (o *robs) forgetCopiesLocked(vol string) {
	for hv := range o.seen {
		if hv.vol == vol {
			delete(o.seen, hv)
		}
	}
}

// watchStandbysLocked looks at every standby host's copy: it never goes
// back to an older head than it was seen at (within an incarnation).
func (o *robs) watchStandbysLocked() {
	for _, h := range o.r.hosts {
		for _, vol := range o.r.vols {
			if !o.r.standbyOf(h, vol) {
				continue
			}
			rec, err := h.db.Volume(context.Background(), vol)
			if err != nil || rec.LocalSnapshot == "" {
				continue
			}
			seq, ok := o.headSeq[vol][rec.LocalSnapshot]
			if !ok {
				continue
			}
			hv := hostVol{h.idx, vol}
			if prev, ok := o.seen[hv]; ok && prev.inc == rec.Incarnation && seq < prev.seq {
				o.problems = append(o.problems, fmt.Sprintf("standby %s's copy of %s went back at %.3fs from snapshot %s (head at record seq %d) to the older %s (seq %d)",
					h.name, vol, time.Since(o.r.start).Seconds(), prev.snap, prev.seq, rec.LocalSnapshot, seq))
			}
			o.seen[hv] = copySeen{inc: rec.Incarnation, snap: rec.LocalSnapshot, seq: seq}
		}
	}
}

// leaseOf returns the takeover that d's lease of vol at generation gen
// made, if any, and its head.
func (o *robs) leaseOf(d *Driver, vol string, gen uint64) (*lease.Takeover, string) {
	l := d.state(vol).holding()
	if l == nil || l.Generation() != gen {
		return nil, ""
	}
	return l.TookOver(), l.Head()
}

// acquisitionLocked returns the first landed write of vol's generation
// gen by h: the acquisition.
func (o *robs) acquisitionLocked(h *rhost, vol string, gen uint64) (leaseWrite, bool) {
	for _, w := range o.lwrites {
		if w.host == h.idx && w.vol == vol && w.rec.Generation == gen && w.rec.Owner == h.name && w.rec.State == lease.Held {
			return w, true
		}
	}
	return leaseWrite{}, false
}

// plannedMoveHead returns the head manifest a Mount on standby host h,
// called at called, must have made the copy equal to: the Mount acquired
// generation gen from a release (not a takeover). nil if it is not such
// a Mount.
func (o *robs) plannedMoveHead(h *rhost, vol string, gen uint64, called time.Time, took *lease.Takeover, head string) *snapshot.Manifest {
	if took != nil || head == "" || !o.r.standbyOf(h, vol) {
		return nil
	}
	o.mu.Lock()
	w, ok := o.acquisitionLocked(h, vol, gen)
	o.mu.Unlock()
	if !ok || w.start.Before(called) {
		return nil // acquired before this Mount: the copy may hold more
	}
	ctx := context.Background()
	if o.repo == nil {
		st, err := o.r.cfg.newStore()
		if err != nil {
			return nil
		}
		if o.repo, err = snapshot.Open(ctx, st, snapshot.Options{}); err != nil {
			o.repo = nil
			return nil
		}
	}
	m, err := o.repo.Load(ctx, vol, head)
	if err != nil {
		o.fail("%s: the head %s of %s that its Mount restored cannot be loaded: %v", h.name, head, vol, err)
		return nil
	}
	return m
}

// checkHeadLocked: after a planned move to a standby host, the copy holds
// exactly the head's files.
func (o *robs) checkHeadLocked(h *rhost, w *rwindow, m *snapshot.Manifest) {
	o.n["planned moves"]++
	var want []string
	for _, n := range m.Nodes {
		if n.Parent == 0 {
			want = append(want, n.Name)
		}
	}
	sort.Strings(want)
	var have []string
	if dir, err := w.root.Open("."); err == nil {
		names, _ := dir.Readdirnames(-1)
		dir.Close()
		have = names
	}
	sort.Strings(have)
	if a, b := strings.Join(have, " "), strings.Join(want, " "); a != b {
		o.problems = append(o.problems, fmt.Sprintf("after a planned move of %s to standby %s (generation %d) its copy is not the head %s: it has [%s], the head [%s]",
			w.vol, h.kind(), w.gen, m.ID, a, b))
	}
}

// tookOverLocked records the takeover a Mount on h found its lease of
// vol (generation gen) made, and checks it if that Mount made it: not by
// force, and only after the old holder stopped renewing for a TTL.
func (o *robs) tookOverLocked(h *rhost, vol string, gen uint64, t *lease.Takeover, called, now time.Time) {
	from := -1
	for _, c := range o.r.hosts {
		if c.name == t.From {
			from = c.idx
		}
	}
	landed := false
	for _, tk := range o.taken {
		if tk.vol == vol && tk.host == from && tk.gen == t.Generation {
			if !tk.landed {
				return // recorded already (portvol takeover, or an earlier Mount)
			}
			landed = true // recorded from the write itself: check it here
		}
	}
	w, ok := o.acquisitionLocked(h, vol, gen)
	if ok && !w.start.Before(called) {
		o.n["auto takeovers"]++
		if t.Forced {
			o.problems = append(o.problems, fmt.Sprintf("%s's Mount of %s took generation %d over from %s by force", h.name, vol, t.Generation, t.From))
		}
		last := o.lastWriteLocked(from, vol, t)
		if gap := w.end.Sub(last); !last.IsZero() && gap < o.r.cfg.ttl {
			o.problems = append(o.problems, fmt.Sprintf("%s's Mount of %s (takeover=auto) took generation %d over from %s at %.3fs, whose last write of it was sent only %s before (lease TTL %s): it had not stopped renewing",
				h.name, vol, t.Generation, t.From, w.end.Sub(o.r.start).Seconds(), gap.Round(time.Millisecond), o.r.cfg.ttl))
		}
	}
	if from < 0 {
		o.problems = append(o.problems, fmt.Sprintf("takeover of %s from unknown host %q", vol, t.From))
		return
	}
	if landed {
		for i := range o.taken {
			if tk := &o.taken[i]; tk.vol == vol && tk.host == from && tk.gen == t.Generation {
				tk.landed = false // checked: later Mounts of this generation are not
			}
		}
		return
	}
	o.takenOverLocked(vol, t.From, t.Generation, called, now)
}
