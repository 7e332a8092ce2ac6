package prune_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/portvol/portvol/prune"
)

// TestDecide: restic's meanings, and the snapshots kept beyond the policy.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var snaps []prune.Candidate
	// One snapshot every 30 minutes for 3 days, generation 5.
	for i := range 3 * 48 {
		snaps = append(snaps, prune.Candidate{ID: fmt.Sprintf("s%03d", i), Time: t0.Add(time.Duration(i) * 30 * time.Minute), Generation: 5})
	}
	head := "s140"
	kept := func(p prune.Policy, snaps []prune.Candidate, head string) map[string][]string {
		out := map[string][]string{}
		for _, d := range prune.Decide(p, snaps, head) {
			if d.Keep {
				out[d.ID] = d.Reasons
			}
		}
		return out
	}
	k := kept(prune.Policy{Last: 2, Hourly: 3, Daily: 2}, snaps, head)
	// Newer than the head: s141..s143; head s140; last 2 = s143, s142;
	// hourly 3 = newest of hours 71, 70, 69 = s143, s141, s139; daily 2 =
	// newest of day 3 and day 2 = s143, s095.
	want := []string{"s143", "s142", "s141", "s140", "s139", "s095"}
	if len(k) != len(want) {
		t.Errorf("kept %v, want %v", k, want)
	}
	for _, id := range want {
		if _, ok := k[id]; !ok {
			t.Errorf("%s not kept (kept: %v)", id, k)
		}
	}
	// A child of the head is kept even if older by the clock (a skewed
	// writer about to publish it).
	snaps2 := append(append([]prune.Candidate{}, snaps...), prune.Candidate{ID: "child", Parent: head, Time: t0, Generation: 6})
	if _, ok := kept(prune.Policy{Last: 1}, snaps2, head)["child"]; !ok {
		t.Error("a snapshot made from the head was forgotten")
	}
	// Bases: the newest snapshot of each of the 4 generations below the
	// newest is kept; older generations' are not.
	var gens []prune.Candidate
	for g := 1; g <= 7; g++ {
		gens = append(gens, prune.Candidate{ID: fmt.Sprintf("g%d", g), Time: t0.Add(time.Duration(g) * time.Hour), Generation: uint64(g)})
	}
	kg := kept(prune.Policy{Last: 1}, gens, "g7")
	for _, id := range []string{"g7", "g6", "g5", "g4", "g3"} {
		if _, ok := kg[id]; !ok {
			t.Errorf("%s not kept: %v", id, kg)
		}
	}
	for _, id := range []string{"g2", "g1"} {
		if _, ok := kg[id]; ok {
			t.Errorf("%s kept beyond the base generations: %v", id, kg)
		}
	}
	// No head yet: nothing is forgotten; zero policy: nothing is forgotten.
	if n := len(kept(prune.Policy{Last: 1}, snaps, "")); n != len(snaps) {
		t.Errorf("without a head %d of %d kept", n, len(snaps))
	}
	if n := len(kept(prune.Policy{}, snaps, head)); n != len(snaps) {
		t.Errorf("zero policy kept %d of %d", n, len(snaps))
	}
}

func TestParseOptions(t *testing.T) {
	p, has, err := prune.ParseOptions(map[string]string{"keep_last": "3", "keep_monthly": " 12 "})
	if err != nil || !has || p != (prune.Policy{Last: 3, Monthly: 12}) {
		t.Errorf("got %+v %v %v", p, has, err)
	}
	if _, has, _ := prune.ParseOptions(map[string]string{"snapshot_interval": "5m"}); has {
		t.Error("no keep_* option, but has")
	}
	for _, bad := range []string{"-1", "x", "100001", ""} {
		if _, _, err := prune.ParseOptions(map[string]string{"keep_daily": bad}); err == nil {
			t.Errorf("keep_daily=%q accepted", bad)
		}
	}
}
