package leasetest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/portvol/portvol/lease"
)

// check asserts the simulation's invariants over the applied writes.
func (s *sim) check() {
	t := s.t
	chain, err := s.audit.history()
	if err != nil {
		t.Fatal(err)
	}
	owners := make(map[uint64]string) // generation → host that held it
	visible := make(map[string]bool)  // snapshots that were ever the head
	var prev *write
	for i := range chain {
		w := &chain[i]
		r := w.rec
		if r.Owner != w.host {
			t.Errorf("write %d by %s names owner %s", i, w.host, r.Owner)
		}
		if r.State == lease.Held {
			if o, ok := owners[r.Generation]; ok && o != r.Owner {
				t.Errorf("invariant 1: generation %d held by %s and by %s", r.Generation, o, r.Owner)
			}
			owners[r.Generation] = r.Owner
		}
		if prev != nil && r.Generation < prev.rec.Generation {
			t.Errorf("invariant 2: generation went from %d to %d (write %d by %s)", prev.rec.Generation, r.Generation, i, w.host)
		}
		if r.Head != "" && (prev == nil || r.Head != prev.rec.Head) {
			visible[r.Head] = true
			want := fmt.Sprintf("%s-g%d-", r.Owner, r.Generation)
			if !strings.HasPrefix(r.Head, want) || r.HeadGeneration != r.Generation {
				t.Errorf("invariant 3: head %q (head_generation %d) published into generation %d of %s",
					r.Head, r.HeadGeneration, r.Generation, r.Owner)
			}
		}
		if prev != nil && r.Generation == prev.rec.Generation+1 && r.Head != prev.rec.Head {
			t.Errorf("acquisition of generation %d by %s changed the head from %q to %q", r.Generation, r.Owner, prev.rec.Head, r.Head)
		}
		if tk := r.Takeover; tk != nil && prev != nil && r.Generation == prev.rec.Generation+1 {
			if prev.rec.State != lease.Held || tk.From != prev.rec.Owner || tk.Generation != prev.rec.Generation {
				t.Errorf("takeover note %+v does not describe the record it replaced (%s by %s, generation %d)",
					*tk, prev.rec.State, prev.rec.Owner, prev.rec.Generation)
			}
			if !tk.Forced {
				s.note("takeover checked")
				if age := w.start - prev.start; age < s.cfg.TTL || tk.Unchanged() < s.cfg.TTL {
					t.Errorf("invariant 4: %s took generation %d from %s after %s (it saw %s), TTL %s",
						r.Owner, prev.rec.Generation, prev.rec.Owner, age, tk.Unchanged(), s.cfg.TTL)
				}
			}
		}
		prev = w
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.fenced {
		if visible[id] {
			t.Errorf("invariant 3: snapshot %s was published although its publish failed as fenced", id)
		}
	}
	for id := range s.published {
		if !visible[id] {
			t.Errorf("snapshot %s was reported published but never became the head", id)
		}
	}
	for gen, host := range s.holders {
		if o, ok := owners[gen]; ok && o != host {
			t.Errorf("invariant 1: generation %d handed to %s but held by %s in the store", gen, host, o)
		}
	}
	s.stats["writes"] = len(chain)
	s.stats["generations"] = len(owners)
	var keys []string
	for k := range s.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var line []string
	for _, k := range keys {
		line = append(line, fmt.Sprintf("%s=%d", k, s.stats[k]))
	}
	t.Logf("simulation: %s", strings.Join(line, " "))
	// A run that never exercised the dangerous paths proves nothing.
	for _, k := range []string{"publish ok", "publish fenced", "release true", "took over", "takeover checked", "crash", "resume"} {
		if s.stats[k] == 0 {
			t.Errorf("the simulation never reached %q; raise Rounds", k)
		}
	}
}
