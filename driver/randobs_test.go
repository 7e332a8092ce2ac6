package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer/faultstore"
)

// robs is the randomized test's observer. It records what users see —
// every successful Mount…Unmount window (host, volume, incarnation,
// generation), every write a container makes into a mounted volume, every
// takeover — and checks at the end of a run (finish) what portvol
// promises:
//
//   - no two hosts' windows of a volume overlap in time, and no two hosts
//     ever mount the same generation;
//   - every acknowledged write (made in a window whose Unmount succeeded
//     and whose final snapshot was then published: the host released the
//     lease with nothing unpublished) is in the volume's head once the
//     faults stop, and the head holds no write of another incarnation of
//     the name;
//   - every write a takeover cut off is in a copy kept on its host (or was
//     published after all);
//   - every volume can be mounted by some host within two lease TTLs once
//     the faults stop, and no mount count is left behind;
//   - every snapshot in the store verifies.
type robs struct {
	r *rrun

	mu        sync.Mutex
	seq       int
	windows   []*rwindow
	cur       map[hostVol]*rwindow // the open window of a host and volume
	retry     []hostVolID          // Unmounts that failed: dockerd's caller retries
	writes    map[int]*rwrite
	pending   map[hostVol][]int // writes of closed windows, waiting for the release
	removedAt map[string]time.Time
	problems  []string
	taken     []takeover
	n         map[string]int // counters for the summary
	faults    map[faultstore.Fault]int

	// What random_shape_test.go's knobs need (randobs_shape_test.go).
	inflight map[hostVol]int              // Mount calls under way
	lwrites  []leaseWrite                 // lease writes that landed
	headSeq  map[string]map[string]uint64 // volume → head → seq of the first record naming it
	seen     map[hostVol]copySeen         // standby copies' last snapshot
	repo     *snapshot.Repo               // the observer's own, without faults
}

type hostVol struct {
	host int
	vol  string
}

type hostVolID struct {
	host    int
	vol, id string
}

// takeover is a successful takeover of vol from host, which held
// generation gen, by a call from start to end.
type takeover struct {
	vol        string
	host       int
	gen        uint64
	start, end time.Time
	landed     bool // recorded from the lease write, not yet by the call that made it
}

type rwindow struct {
	host       int
	vol, inc   string
	gen        uint64
	called     time.Time // the Mount that opened it was called
	start, end time.Time // end: zero while open
	cutAt      time.Time // a takeover from this host began
	ids        map[string]bool
	root       *os.Root // the container's view of the Mountpoint
	writes     []int
}

func (w *rwindow) until() time.Time {
	e := w.end
	if e.IsZero() {
		e = time.Now().Add(time.Hour)
	}
	if !w.cutAt.IsZero() && w.cutAt.Before(e) {
		e = w.cutAt
	}
	return e
}

type wstate int

const (
	wOpen    wstate = iota // written in a window still open
	wPending               // window closed, final snapshot not known published
	wAcked                 // the host released with this write published
	wCut                   // a takeover (fencing) cut it off: kept on the host
	wRetired               // the volume was removed after it was published
)

type rwrite struct {
	seq   int
	host  int
	vol   string
	inc   string
	gen   uint64
	state wstate
}

func newObserver(r *rrun) *robs {
	return &robs{r: r, cur: map[hostVol]*rwindow{}, writes: map[int]*rwrite{}, pending: map[hostVol][]int{},
		removedAt: map[string]time.Time{}, n: map[string]int{}, faults: map[faultstore.Fault]int{},
		inflight: map[hostVol]int{}, headSeq: map[string]map[string]uint64{}, seen: map[hostVol]copySeen{}}
}

func (o *robs) fail(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
}

func (o *robs) failed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.problems) > 0
}

// mounted records a successful Mount of vol by id on h's process d, called
// at called.
func (o *robs) mounted(h *rhost, d *Driver, vol, id, mp string, called time.Time) {
	now := time.Now()
	var inc string
	var gen uint64
	if rec, err := d.db.Volume(context.Background(), vol); err == nil {
		inc, gen = rec.Incarnation, rec.Generation
	}
	took, head := o.leaseOf(d, vol, gen)
	planned := o.plannedMoveHead(h, vol, gen, called, took, head)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n["mounts"]++
	hv := hostVol{h.idx, vol}
	if w := o.cur[hv]; w != nil {
		same := true
		if !w.cutAt.IsZero() {
			// A fenced copy's counts are dropped by the next Mount, which
			// starts over (a new window); until the fence is noticed the
			// Mount joins the old one.
			m, err := d.db.Mounts(context.Background(), vol)
			same = err != nil
			for old := range w.ids {
				if m[old] > 0 {
					same = true
				}
			}
		}
		if same {
			w.ids[id] = true
			return
		}
		o.closeLocked(w, now)
	}
	root, err := os.OpenRoot(mp)
	if err != nil {
		o.problems = append(o.problems, fmt.Sprintf("%s: Mount of %s returned %s, which cannot be opened: %v", h.name, vol, mp, err))
		return
	}
	if took != nil {
		o.tookOverLocked(h, vol, gen, took, called, now)
	}
	w := &rwindow{host: h.idx, vol: vol, inc: inc, gen: gen, called: called, start: now, ids: map[string]bool{id: true}, root: root}
	for _, tk := range o.taken {
		// A takeover while this Mount was under way took its generation.
		if tk.vol == vol && tk.host == h.idx && gen <= tk.gen && called.Before(tk.end) {
			w.cutAt = now
		}
	}
	o.windows = append(o.windows, w)
	o.cur[hv] = w
	o.n["windows"]++
	if w.cutAt.IsZero() {
		// What a new window shows must hold every acknowledged write (and
		// after a planned move to a standby host, exactly the head).
		o.checkContentLocked(h, w, "at its Mount")
		if planned != nil {
			o.checkHeadLocked(h, w, planned)
		}
	}
}

// closeLocked ends window w at t: the container stopped.
func (o *robs) closeLocked(w *rwindow, t time.Time) {
	w.end = t
	w.root.Close()
	hv := hostVol{w.host, w.vol}
	delete(o.cur, hv)
	for _, s := range w.writes {
		if wr := o.writes[s]; wr.state == wOpen {
			wr.state = wPending
			o.pending[hv] = append(o.pending[hv], s)
		}
	}
}

// mountID returns an ID h has vol mounted by.
func (o *robs) mountID(h *rhost, vol string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.cur[hostVol{h.idx, vol}]
	if w == nil {
		return "", false
	}
	ids := make([]string, 0, len(w.ids))
	for id := range w.ids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids[o.r.rng.IntN(len(ids))], true
}

// unmounting is called before an Unmount of id: the container using it
// stops. The last ID closes the window, whatever Unmount then answers.
func (o *robs) unmounting(h *rhost, vol, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.cur[hostVol{h.idx, vol}]
	if w == nil || !w.ids[id] {
		return
	}
	delete(w.ids, id)
	if len(w.ids) == 0 {
		o.closeLocked(w, time.Now())
	}
}

// unmounted records Unmount's answer; a failed one is retried later.
func (o *robs) unmounted(h *rhost, vol, id string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.retry = append(o.retry, hostVolID{h.idx, vol, id})
		o.n["unmount errors"]++
	}
}

// unfinished returns an Unmount of h to retry, if any.
func (o *robs) unfinished(h *rhost) *hostVolID {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, u := range o.retry {
		if u.host == h.idx {
			o.retry = append(o.retry[:i], o.retry[i+1:]...)
			return &u
		}
	}
	return nil
}

// write makes one write of a container into h's mounted vol; 0 if h does
// not have it mounted.
func (o *robs) write(h *rhost, vol string) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.cur[hostVol{h.idx, vol}]
	if w == nil {
		return 0, nil
	}
	o.seq++
	s := o.seq
	if err := w.root.WriteFile(fileOf(s), contentOf(s), 0o644); err != nil {
		return s, err
	}
	st := wOpen
	if !w.cutAt.IsZero() {
		st = wCut
	}
	o.writes[s] = &rwrite{seq: s, host: h.idx, vol: vol, inc: w.inc, gen: w.gen, state: st}
	w.writes = append(w.writes, s)
	o.n["writes"]++
	return s, nil
}

func fileOf(seq int) string    { return fmt.Sprintf("w%06d", seq) }
func contentOf(seq int) []byte { return []byte(fmt.Sprintf("write %d\n", seq)) }

// takenOver records a takeover of vol from host from, which held
// generation gen, made by a call from start to end: that host's windows
// and unpublished writes of generations up to gen are cut off there. A
// window of such a generation whose Mount was under way during the
// takeover is cut off from its start (the Mount may have checked the
// lease just before the takeover wrote); one whose Mount was called after
// the takeover returned is not: that Mount handed out a lease already
// lost.
func (o *robs) takenOver(vol, from string, gen uint64, start, end time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.takenOverLocked(vol, from, gen, start, end)
}

func (o *robs) takenOverLocked(vol, from string, gen uint64, start, end time.Time) {
	o.n["takeovers"]++
	idx := -1
	for _, h := range o.r.hosts {
		if h.name == from {
			idx = h.idx
		}
	}
	if idx < 0 {
		o.problems = append(o.problems, fmt.Sprintf("takeover of %s from unknown host %q", vol, from))
		return
	}
	o.taken = append(o.taken, takeover{vol: vol, host: idx, gen: gen, start: start, end: end})
	for _, w := range o.windows {
		if w.host == idx && w.vol == vol && w.gen <= gen && w.cutAt.IsZero() && w.called.Before(end) && (w.end.IsZero() || w.end.After(start)) {
			w.cutAt = start
			if w.start.After(start) {
				w.cutAt = w.start
			}
			for _, s := range w.writes {
				o.writes[s].state = wCut
			}
		}
	}
	hv := hostVol{idx, vol}
	var keep []int
	for _, s := range o.pending[hv] {
		if wr := o.writes[s]; wr.gen <= gen {
			wr.state = wCut
		} else {
			keep = append(keep, s)
		}
	}
	o.pending[hv] = keep
}

// removed records a successful Remove of vol on h: it waited for h's final
// snapshot, so h's writes waiting for it were published (into the trash).
func (o *robs) removed(h *rhost, vol string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n["removes"]++
	o.removedAt[vol] = time.Now()
	o.forgetCopiesLocked(vol)
	hv := hostVol{h.idx, vol}
	for _, s := range o.pending[hv] {
		o.writes[s].state = wRetired
	}
	delete(o.pending, hv)
}

// killed records the kill of h's process: mounts stay (containers keep
// running), and so do its windows.
func (o *robs) killed(h *rhost) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n["kills"]++
	o.countFaults(h.fs)
}

func (o *robs) countFaults(fs *faultstore.Store) {
	for _, op := range faultstore.Ops {
		for _, f := range []faultstore.Fault{faultstore.Fail, faultstore.Lose, faultstore.Late} {
			o.faults[f] += fs.Count(op, f)
		}
	}
}

// settle resolves writes waiting for their host's release: published and
// released (acknowledged), fenced (cut off: kept there), or the volume
// removed there since.
func (o *robs) settle() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.watchStandbysLocked()
	for hv, seqs := range o.pending {
		if len(seqs) == 0 {
			delete(o.pending, hv)
			continue
		}
		h := o.r.hosts[hv.host]
		rec, err := h.db.Volume(context.Background(), hv.vol)
		var st wstate
		switch {
		case errors.Is(err, metadata.ErrNotFound):
			if _, ok := o.removedAt[hv.vol]; !ok {
				continue
			}
			st = wRetired
		case err != nil:
			continue
		case rec.Local == metadata.LocalDiverged:
			st = wCut
		case rec.Generation == 0 && !rec.Dirty && rec.Local == metadata.LocalReady:
			v := h.d.state(hv.vol)
			if v.holding() != nil || v.currentJob() != nil {
				continue
			}
			st = wAcked
		default:
			continue
		}
		for _, s := range seqs {
			wr := o.writes[s]
			if st == wAcked && rec.Incarnation != wr.inc {
				wr.state = wRetired // the name was removed and made again meanwhile
				continue
			}
			wr.state = st
		}
		delete(o.pending, hv)
	}
}

// summary counts what a run did.
func (o *robs) summary() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	states := map[wstate]int{}
	for _, w := range o.writes {
		states[w.state]++
	}
	return fmt.Sprintf("%d mounts in %d windows, %d unmount errors, %d writes (%d acknowledged, %d cut off by takeovers and kept, %d of removed volumes), %d takeovers (%d by a Mount of takeover=auto), %d removes, %d kills, %d partitions; %d snapshots published (%d by btrfs hosts), %d standby refreshes (%d planned moves to a standby checked against the head); faults injected: %d failed, %d lost answers, %d late answers",
		o.n["mounts"], o.n["windows"], o.n["unmount errors"], o.n["writes"], states[wAcked], states[wCut], states[wRetired], o.n["takeovers"], o.n["auto takeovers"], o.n["removes"], o.n["kills"], o.n["partitions"],
		o.n["published"], o.n["btrfs published"], o.n["standby refreshes"], o.n["planned moves"],
		o.faults[faultstore.Fail], o.faults[faultstore.Lose], o.faults[faultstore.Late])
}

// finish stops the faults, unmounts everything, checks the run and
// returns the problems found.
func (o *robs) finish() []string {
	r := o.r
	for _, h := range r.hosts {
		h.wait()
	}
	r.healPartitions(true)
	for _, h := range r.hosts {
		o.mu.Lock()
		o.countFaults(h.fs)
		o.mu.Unlock()
		h.fs.SetRates(faultstore.Rates{})
	}
	r.logf("end of the steps: faults off, unmounting everything")
	// Every container stops.
	for range 5 {
		var todo []hostVolID
		o.mu.Lock()
		for hv, w := range o.cur {
			for id := range w.ids {
				todo = append(todo, hostVolID{hv.host, hv.vol, id})
			}
		}
		todo = append(todo, o.retry...)
		o.retry = nil
		o.mu.Unlock()
		if len(todo) == 0 {
			break
		}
		for _, u := range todo {
			r.opUnmount(r.hosts[u.host], u.vol, u.id)
		}
	}
	o.mu.Lock()
	if len(o.retry) > 0 {
		o.problems = append(o.problems, fmt.Sprintf("Unmounts still failing after the faults stopped: %v", o.retry))
	}
	o.mu.Unlock()

	// Every write is resolved: the releases end. Then every volume that
	// exists can be mounted by some host within two TTLs (and a few
	// seconds for the store calls of a loaded machine), and holds what it
	// must.
	o.awaitReleases()
	for _, vol := range r.vols {
		o.checkVolume(vol)
	}
	o.awaitReleases()
	o.mu.Lock()
	for hv, seqs := range o.pending {
		h := r.hosts[hv.host]
		rec, _ := h.db.Volume(context.Background(), hv.vol)
		o.problems = append(o.problems, fmt.Sprintf("%s never finished releasing %s after its last Unmount (local %q, generation %d, dirty %v, last error %q): writes %v neither published nor kept aside",
			h.name, hv.vol, rec.Local, rec.Generation, rec.Dirty, rec.LastError, seqs))
	}
	o.mu.Unlock()

	// No mount count is left behind.
	for _, h := range r.hosts {
		all, err := h.db.AllMounts(context.Background())
		if err != nil {
			o.fail("%s: %v", h.name, err)
		}
		for vol, m := range all {
			o.fail("%s still counts mounts of %s after every container stopped: %v", h.name, vol, m)
		}
	}

	o.checkCutWrites()
	o.checkWindows()
	o.verifyStore()

	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.problems...)
}

// awaitReleases waits (a while) until every closed window's writes are
// resolved: the hosts' releases ended.
func (o *robs) awaitReleases() {
	deadline := time.Now().Add(2*o.r.cfg.ttl + 10*time.Second)
	for {
		o.settle()
		o.mu.Lock()
		left := len(o.pending)
		o.mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkVolume mounts vol on some host (if it exists) and checks its
// content against the writes.
func (o *robs) checkVolume(vol string) {
	r := o.r
	exists := false
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r.hosts[0].d.view.invalidate(vol) // Get trusts a volume it saw for 3 s
		_, err := r.hosts[0].d.Get(ctx, vol)
		cancel()
		if err == nil {
			exists = true
			break
		}
		if errors.Is(err, ErrNotFound) {
			break
		}
		if attempt == 50 {
			o.fail("Get %s on %s keeps failing after the faults stopped: %v", vol, r.hosts[0].name, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.logf("final check of %s: exists %v", vol, exists)
	if !exists {
		return
	}
	h, id, ok := o.mountSomewhere(vol, r.hosts)
	if !ok {
		return
	}
	o.settle()
	o.mu.Lock()
	first := o.checkContentLocked(h, o.cur[hostVol{h.idx, vol}], "after the faults stopped")
	o.mu.Unlock()
	r.opUnmount(h, vol, id)

	// A host that keeps its copies the other way (btrfs, directories)
	// gives the same answer; one that is a standby of the volume if
	// there is one (a planned move there: its copy must be the head).
	var other *rhost
	for _, c := range r.hosts {
		switch {
		case c == h:
		case (c.copies == nil) != (h.copies == nil) && (other == nil || r.standbyOf(c, vol)):
			other = c
		case r.standbyOf(c, vol) && (other == nil || (other.copies == nil) == (h.copies == nil)):
			other = c
		}
	}
	if other == nil {
		return
	}
	o.awaitReleases()
	h2, id2, ok := o.mountSomewhere(vol, []*rhost{other})
	if !ok {
		return
	}
	o.settle()
	o.mu.Lock()
	second := o.checkContentLocked(h2, o.cur[hostVol{h2.idx, vol}], "after the faults stopped")
	if a, b := strings.Join(first, " "), strings.Join(second, " "); a != b {
		o.problems = append(o.problems, fmt.Sprintf("%s and %s answer differently for %s after the faults stopped: %s has %d files [%s], %s has %d [%s]",
			h.kind(), h2.kind(), vol, h.name, len(first), a, h2.name, len(second), b))
	}
	o.n["cross-checked"]++
	o.mu.Unlock()
	r.opUnmount(h2, vol, id2)
}

// mountSomewhere mounts vol on one of hosts, trying them in turn for up
// to two lease TTLs (and a few seconds for a loaded machine's store
// calls): the faults stopped, so some host must get it.
func (o *robs) mountSomewhere(vol string, hosts []*rhost) (*rhost, string, bool) {
	r := o.r
	start := time.Now()
	deadline := start.Add(2*r.cfg.ttl + 5*time.Second)
	for i := 0; ; i++ {
		h := hosts[i%len(hosts)]
		r.opMount(h, vol)
		if id, ok := o.mountID(h, vol); ok {
			return h, id, true
		}
		if i%len(hosts) == len(hosts)-1 {
			time.Sleep(r.cfg.ttl / 10)
		}
		if time.Now().After(deadline) {
			var why []string
			for _, h := range hosts {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				o.mounting(h, vol, 1)
				_, err := h.d.Mount(ctx, vol, "final-probe")
				o.mounting(h, vol, -1)
				cancel()
				why = append(why, fmt.Sprintf("%s: %v", h.name, errText(err)))
			}
			o.fail("no host can mount %s within two lease TTLs (%s) after the faults stopped (waited %s): %s", vol, r.cfg.ttl, time.Since(start).Round(time.Millisecond), strings.Join(why, "; "))
			return nil, "", false
		}
	}
}

// checkContentLocked reads window w's mounted copy on h: every file is a
// write of its incarnation with its content, and every acknowledged write
// of the incarnation is there. It returns the names found, sorted.
func (o *robs) checkContentLocked(h *rhost, w *rwindow, when string) []string {
	r := o.r
	vol := w.vol
	var entries []os.DirEntry
	dir, err := w.root.Open(".")
	if err == nil {
		entries, err = dir.ReadDir(-1)
		dir.Close()
	}
	if err != nil {
		o.problems = append(o.problems, fmt.Sprintf("%s: read mounted %s %s: %v", h.name, vol, when, err))
	}
	have := map[int]bool{}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		s, ok := seqOf(e.Name())
		if !ok {
			continue
		}
		have[s] = true
		wr := o.writes[s]
		switch {
		case wr == nil:
			o.problems = append(o.problems, fmt.Sprintf("%s on %s holds %s, which nobody wrote", vol, h.name, e.Name()))
		case wr.inc != w.inc:
			o.problems = append(o.problems, fmt.Sprintf("%s (incarnation %s) on %s holds %s %s, written into another incarnation of the name (%s) on %s", vol, w.inc, h.name, e.Name(), when, wr.inc, r.hosts[wr.host].name))
		default:
			// A write not acknowledged may be in the copy as a periodic
			// snapshot caught it, between creating the file and writing
			// it (seed 289379: the head a takeover restored held w000058
			// empty), as after a crash: a prefix of its content then. An
			// acknowledged write must be whole.
			got, err := w.root.ReadFile(e.Name())
			whole := err == nil && string(got) == string(contentOf(s))
			torn := err == nil && wr.state != wAcked && strings.HasPrefix(string(contentOf(s)), string(got))
			if !whole && !torn {
				o.problems = append(o.problems, fmt.Sprintf("%s on %s: %s holds %q (%v) %s, want %q", vol, h.name, e.Name(), got, err, when, contentOf(s)))
			}
		}
	}
	var missing []string
	for s, wr := range o.writes {
		if wr.vol == vol && wr.inc == w.inc && wr.state == wAcked && !have[s] {
			missing = append(missing, fmt.Sprintf("%s (by %s, generation %d)", fileOf(s), r.hosts[wr.host].name, wr.gen))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		o.problems = append(o.problems, fmt.Sprintf("%s mounted on %s (%s; incarnation %s, generation %d) %s lacks %d acknowledged writes: %s", vol, h.name, h.kind(), w.inc, w.gen, when, len(missing), strings.Join(missing, ", ")))
	}
	sort.Strings(names)
	return names
}

func seqOf(name string) (int, bool) {
	if !strings.HasPrefix(name, "w") {
		return 0, false
	}
	s, err := strconv.Atoi(name[1:])
	return s, err == nil
}

// checkCutWrites looks for every write a takeover cut off in the copies
// its host keeps (fenced-, diverged-, orphan- beside the data, kept/; the
// data directory too, for a host that restored it again).
func (o *robs) checkCutWrites() {
	o.mu.Lock()
	defer o.mu.Unlock()
	found := map[int]map[int]bool{} // host → seqs found in a kept copy or data
	for _, h := range o.r.hosts {
		found[h.idx] = map[int]bool{}
		for _, dir := range h.keptDirs() {
			_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if s, ok := seqOf(e.Name()); ok {
						found[h.idx][s] = true
					}
				}
				return nil
			})
		}
	}
	var lost []string
	for s, wr := range o.writes {
		if wr.state == wCut && !found[wr.host][s] {
			lost = append(lost, fmt.Sprintf("%s (%s on %s)", fileOf(s), wr.vol, o.r.hosts[wr.host].name))
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		o.problems = append(o.problems, fmt.Sprintf("%d writes cut off by takeovers are neither in a copy kept on their host nor in the store: %s", len(lost), strings.Join(lost, ", ")))
	}
}

// checkWindows checks that no two hosts' windows of a volume overlap and
// that no generation was mounted by two hosts.
func (o *robs) checkWindows() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, a := range o.windows {
		for _, b := range o.windows[i+1:] {
			if a.vol != b.vol || a.host == b.host {
				continue
			}
			name := func(w *rwindow) string {
				return fmt.Sprintf("%s (incarnation %s, generation %d) from %.3fs to %.3fs", o.r.hosts[w.host].name, w.inc, w.gen,
					w.start.Sub(o.r.start).Seconds(), w.until().Sub(o.r.start).Seconds())
			}
			empty := func(w *rwindow) bool { return !w.until().After(w.start) } // cut off from its start
			if !empty(a) && !empty(b) && a.start.Before(b.until()) && b.start.Before(a.until()) {
				o.problems = append(o.problems, fmt.Sprintf("two hosts had %s mounted at once: %s and %s", a.vol, name(a), name(b)))
			}
			if a.gen != 0 && a.gen == b.gen && a.inc == b.inc {
				o.problems = append(o.problems, fmt.Sprintf("two hosts mounted %s at the same generation: %s and %s", a.vol, name(a), name(b)))
			}
		}
	}
}

// verifyStore is portvol verify --all over every volume in the store.
func (o *robs) verifyStore() {
	ctx := context.Background()
	st, err := o.r.cfg.newStore()
	if err != nil {
		o.fail("verify: %v", err)
		return
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{})
	if err != nil {
		o.fail("verify: %v", err)
		return
	}
	n := 0
	for _, vol := range o.r.vols {
		infos, err := repo.List(ctx, vol)
		if err != nil {
			o.fail("verify: list the snapshots of %s: %v", vol, err)
			continue
		}
		for _, in := range infos {
			n++
			if err := repo.Verify(ctx, vol, in.ID); err != nil {
				o.fail("verify %s snapshot %s: %v", vol, in.ID, err)
			}
		}
	}
	o.mu.Lock()
	o.n["verified"] = n
	o.mu.Unlock()
}
