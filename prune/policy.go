package prune

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Policy says which snapshots of a volume to keep (doc.go, "Retention").
// The zero Policy keeps everything.
type Policy struct {
	Last    int // the n newest
	Hourly  int // the newest of each of the n most recent hours with a snapshot
	Daily   int
	Weekly  int // ISO weeks
	Monthly int
}

// DefaultPolicy is a volume's retention when it sets none: the last 24
// snapshots (two hours at the default 5-minute interval) and one a day for
// a week.
var DefaultPolicy = Policy{Last: 24, Daily: 7}

// BaseGenerations is how many earlier generations keep their newest
// snapshot, the base other hosts' local copies hold (doc.go).
const BaseGenerations = 4

// maxKeep bounds each count, so a typo cannot make a policy meaningless.
const maxKeep = 100000

// Empty reports whether the policy keeps everything (no rule set).
func (p Policy) Empty() bool { return p == Policy{} }

// OptionNames are the volume options (and --keep-* flags) of a policy.
var OptionNames = []string{"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"}

func (p *Policy) fields() []*int { return []*int{&p.Last, &p.Hourly, &p.Daily, &p.Weekly, &p.Monthly} }

// ParseOptions reads a policy from volume options. has is false if none of
// OptionNames is set (the caller applies its default). Every value must be
// a whole number from 0 to 100000; a policy whose counts are all 0 keeps
// everything.
func ParseOptions(opts map[string]string) (p Policy, has bool, err error) {
	f := p.fields()
	for i, name := range OptionNames {
		v, ok := opts[name]
		if !ok {
			continue
		}
		has = true
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > maxKeep {
			return Policy{}, false, fmt.Errorf("option %s=%q: want a whole number from 0 to %d (0 keeps none by this rule)", name, v, maxKeep)
		}
		*f[i] = n
	}
	return p, has, nil
}

// Options returns the policy as volume options (all five names).
func (p Policy) Options() map[string]string {
	out := make(map[string]string, len(OptionNames))
	for i, v := range p.fields() {
		out[OptionNames[i]] = strconv.Itoa(*v)
	}
	return out
}

// String shows the policy as people read it: "last 24, daily 7".
func (p Policy) String() string {
	if p.Empty() {
		return "keep everything"
	}
	names := []string{"last", "hourly", "daily", "weekly", "monthly"}
	var parts []string
	for i, v := range p.fields() {
		if *v > 0 {
			parts = append(parts, names[i]+" "+strconv.Itoa(*v))
		}
	}
	return strings.Join(parts, ", ")
}

// Candidate is one snapshot as retention sees it.
type Candidate struct {
	ID         string
	Parent     string
	Time       time.Time // when it was started
	Generation uint64
}

// Decision says whether a snapshot is kept and why.
type Decision struct {
	Candidate
	Keep    bool
	Reasons []string // "head", "last", "hourly", …, "base of generation 7"
}

// Decide applies p to snaps (any order). Beyond p it keeps the head, every
// snapshot that may be about to become the head (its parent is the head,
// or it is newer: a manifest is written before its publish), the newest
// snapshot of each of the BaseGenerations generations below the newest,
// and everything while the volume has no head. The result is newest
// first. A zero policy keeps all.
func Decide(p Policy, snaps []Candidate, head string) []Decision {
	ds := make([]Decision, len(snaps))
	for i, s := range snaps {
		ds[i] = Decision{Candidate: s}
	}
	// Newest first; ties broken by ID so the result is deterministic.
	sortDecisions(ds)
	if p.Empty() {
		for i := range ds {
			ds[i].Keep, ds[i].Reasons = true, []string{"no policy"}
		}
		return ds
	}
	keep := func(d *Decision, why string) { d.Keep, d.Reasons = true, append(d.Reasons, why) }
	headAt := -1
	for i := range ds {
		if ds[i].ID == head {
			keep(&ds[i], "head")
			headAt = i
		}
	}
	for i := range ds {
		switch {
		case head == "":
			keep(&ds[i], "no head yet")
		case ds[i].Parent == head && ds[i].ID != head:
			keep(&ds[i], "child of the head")
		case headAt < 0 || i < headAt:
			keep(&ds[i], "newer than the head")
		}
	}
	// Bases: the newest snapshot of each earlier generation, for the
	// BaseGenerations generations just below the newest.
	var newestGen uint64
	for _, d := range ds {
		newestGen = max(newestGen, d.Generation)
	}
	seenGen := map[uint64]bool{}
	for i := range ds {
		g := ds[i].Generation
		if g == 0 || g == newestGen || g+BaseGenerations < newestGen || seenGen[g] {
			continue
		}
		seenGen[g] = true
		keep(&ds[i], fmt.Sprintf("base of generation %d", g))
	}
	if p.Last > 0 {
		for i := 0; i < len(ds) && i < p.Last; i++ {
			keep(&ds[i], "last")
		}
	}
	buckets := []struct {
		n    int
		name string
		key  func(time.Time) string
	}{
		{p.Hourly, "hourly", func(t time.Time) string { return t.UTC().Format("2006-01-02 15") }},
		{p.Daily, "daily", func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
		{p.Weekly, "weekly", func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{p.Monthly, "monthly", func(t time.Time) string { return t.UTC().Format("2006-01") }},
	}
	for _, b := range buckets {
		left, last := b.n, ""
		for i := range ds {
			if left == 0 {
				break
			}
			k := b.key(ds[i].Time)
			if k == last {
				continue
			}
			last = k
			left--
			keep(&ds[i], b.name)
		}
	}
	return ds
}
