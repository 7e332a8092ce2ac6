package driver

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

// The randomized test's observer catches the bugs it is there for: each
// case plants one in the hosts of a short scripted run and expects the
// observer to report it; the same script without the plant passes.
func TestRandomObserverCatchesPlantedBugs(t *testing.T) {
	requireRoot(t)
	config := func(t *testing.T, plant func(h *rhost)) rconfig {
		dir := filepath.Join(t.TempDir(), "store")
		return rconfig{
			seed: 1, hosts: 2, volumes: 1, ttl: 300 * time.Millisecond, plant: plant,
			newStore: func() (transfer.ObjectStore, error) { return localdir.New(dir) },
		}
	}
	// Both hosts try to mount; the first writes and unmounts, the second
	// too; then the run is checked.
	script := func(t *testing.T, plant func(h *rhost)) []string {
		r := newRun(t, config(t, plant))
		a, b := r.hosts[0], r.hosts[1]
		r.opCreate(a, "v0")
		r.opMount(a, "v0")
		r.opWrite(a, "v0", 3)
		r.opMount(b, "v0")
		r.opWrite(b, "v0", 2)
		for _, h := range r.hosts {
			if id, ok := r.obs.mountID(h, "v0"); ok {
				r.opUnmount(h, "v0", id)
			}
		}
		problems := r.obs.finish()
		if testing.Verbose() {
			t.Logf("steps:\n%s", strings.Join(r.log, "\n"))
		}
		return problems
	}
	expect := func(t *testing.T, problems []string, want ...string) {
		t.Helper()
		all := strings.Join(problems, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("the observer missed the planted bug: no %q in what it reported:\n%s", w, all)
			}
		}
	}

	t.Run("no plant", func(t *testing.T) {
		if p := script(t, nil); len(p) > 0 {
			t.Errorf("the observer reports problems of a sound run:\n%s", strings.Join(p, "\n"))
		}
	})

	// A host that skips the lease check: its leases live where no other
	// host looks, so it mounts what another host holds.
	t.Run("lease check skipped", func(t *testing.T) {
		p := script(t, func(h *rhost) {
			if h.idx == 1 {
				h.leasePrefix = "elsewhere/"
			}
		})
		expect(t, p, "two hosts had v0 mounted at once", "two hosts mounted v0 at the same generation")
	})

	// A host whose mounts show containers an empty directory instead of
	// the volume's data: what they write never reaches a snapshot.
	t.Run("writes lost", func(t *testing.T) {
		p := script(t, func(h *rhost) {
			if h.idx == 0 {
				h.mnt.mounter = decoyMounter{dir: t.TempDir()}
			}
		})
		expect(t, p, "acknowledged writes")
	})

	// A host that drops the copy a takeover cut off instead of keeping it.
	t.Run("fenced copy dropped", func(t *testing.T) {
		r := newRun(t, config(t, nil))
		a, b := r.hosts[0], r.hosts[1]
		r.opCreate(a, "v0")
		r.opMount(a, "v0")
		r.opWrite(a, "v0", 2)
		r.opTakeover(b, "v0", true)
		eventually(t, "A to notice the takeover", func() bool {
			rec, err := a.db.Volume(t.Context(), "v0")
			return err == nil && rec.Local == "diverged"
		})
		kept, _ := filepath.Glob(filepath.Join(a.stateDir, "volumes", "v0", "fenced-*"))
		for _, k := range kept {
			os.RemoveAll(k)
		}
		expect(t, r.obs.finish(), "cut off by takeovers are neither in a copy kept")
	})
}

// The checks of the shapes a seed picks (randobs_shape_test.go) catch
// their bugs too.
func TestRandomObserverCatchesPlantedShapeBugs(t *testing.T) {
	requireRoot(t)
	config := func(t *testing.T, opts map[string]string, plant func(h *rhost)) rconfig {
		dir := filepath.Join(t.TempDir(), "store")
		return rconfig{
			seed: 1, hosts: 2, volumes: 1, ttl: 300 * time.Millisecond, plant: plant, vopts: []map[string]string{opts},
			newStore: func() (transfer.ObjectStore, error) { return localdir.New(dir) },
		}
	}
	expect := func(t *testing.T, problems []string, want string) {
		t.Helper()
		if all := strings.Join(problems, "\n"); !strings.Contains(all, want) {
			t.Errorf("the observer missed the planted bug: no %q in what it reported:\n%s", want, all)
		}
	}

	// A host whose clock runs 5 times too fast sees a live lease expire
	// and its Mount of a takeover=auto volume takes it over while the
	// holder still renews.
	t.Run("auto takeover of a live lease", func(t *testing.T) {
		script := func(plant func(h *rhost)) []string {
			r := newRun(t, config(t, map[string]string{OptTakeover: "auto", OptSnapshotInterval: "0"}, plant))
			a, b := r.hosts[0], r.hosts[1]
			r.opCreate(a, "v0")
			r.opMount(a, "v0")
			r.opWrite(a, "v0", 2)
			for deadline := time.Now().Add(3 * r.cfg.ttl); time.Now().Before(deadline); {
				if r.opMount(b, "v0"); func() bool { _, ok := r.obs.mountID(b, "v0"); return ok }() {
					break
				}
			}
			return r.obs.finish()
		}
		if p := script(nil); len(p) > 0 {
			t.Errorf("the observer reports problems of a sound run:\n%s", strings.Join(p, "\n"))
		}
		expect(t, script(func(h *rhost) {
			if h.idx == 1 {
				h.leaseClock = fastClock{start: time.Now(), k: 5}
			}
		}), "it had not stopped renewing")
	})

	// A standby host whose copy goes back to an older head.
	t.Run("standby copy goes back", func(t *testing.T) {
		r := newRun(t, config(t, map[string]string{OptStandby: "host1", OptSnapshotInterval: "0"}, nil))
		a, b := r.hosts[0], r.hosts[1]
		r.opCreate(a, "v0")
		r.opGet(b, "v0") // b keeps a record of it
		for range 2 {
			r.opMount(a, "v0")
			r.opWrite(a, "v0", 1)
			id, _ := r.obs.mountID(a, "v0")
			r.opUnmount(a, "v0", id)
			r.obs.awaitReleases()
		}
		r.obs.mu.Lock()
		var heads []string
		for head := range r.obs.headSeq["v0"] {
			heads = append(heads, head)
		}
		sort.Slice(heads, func(i, j int) bool { return r.obs.headSeq["v0"][heads[i]] < r.obs.headSeq["v0"][heads[j]] })
		r.obs.mu.Unlock()
		if len(heads) < 2 {
			t.Fatalf("heads published: %v", heads)
		}
		for _, head := range []string{heads[len(heads)-1], heads[0]} {
			b.d.update(t.Context(), "v0", func(rec *metadata.Volume) { rec.LocalSnapshot = head })
			r.obs.settle()
		}
		expect(t, r.obs.finish(), "standby host1's copy of v0 went back")
	})
}

// fastClock runs k times faster than the system's: a planted bug.
type fastClock struct {
	start time.Time
	k     int
}

func (c fastClock) Now() time.Duration { return time.Since(c.start) * time.Duration(c.k) }

func (c fastClock) After(d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(d/time.Duration(c.k), func() { close(ch) })
	return ch
}

// decoyMounter binds an empty directory of its own instead of the volume's
// data: a planted bug.
type decoyMounter struct {
	sysMounter
	dir string
}

func (m decoyMounter) Bind(_, dst string) error {
	d, err := os.MkdirTemp(m.dir, "decoy")
	if err != nil {
		return err
	}
	return m.sysMounter.Bind(d, dst)
}
