package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
