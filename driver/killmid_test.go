package driver

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/faultstore"
	"github.com/portvol/portvol/transfer/localdir"
)

// TestKillMidTakeoverMountsAgain: a process killed after its takeover's
// write landed but before it recorded the new generation (the answer came
// late) leaves the volume held by this host's id at a generation no process
// knows. After the restart a host must still be able to mount the volume
// without anyone running portvol takeover: the restarted host takes over
// its own lease once it has seen it unchanged for a TTL (randomized-test
// seed 820304 found it stuck for good).
func TestKillMidTakeoverMountsAgain(t *testing.T) {
	r, _, _ := killMidTakeover(t)
	deadline := time.Now().Add(2*r.cfg.ttl + 5*time.Second)
	for time.Now().Before(deadline) {
		for _, h := range r.hosts {
			r.opMount(h, "v0")
			if _, ok := r.obs.mountID(h, "v0"); ok {
				t.Logf("%s mounted v0", h.name)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("no host can mount v0 after a kill mid-takeover:\n%s", strings.Join(r.log, "\n"))
}

// TestKillMidTakeoverOtherHostMounts: the same kill, but nobody mounts on
// the restarted host. Its recovery rounds give the orphaned lease back
// once they have seen it unchanged for a TTL, so another host's Mount
// (without takeover=auto) succeeds without anyone running portvol takeover.
func TestKillMidTakeoverOtherHostMounts(t *testing.T) {
	r, a, b := killMidTakeover(t)
	r.opMount(a, "v0")
	if _, ok := r.obs.mountID(a, "v0"); ok {
		t.Fatalf("host0 mounted v0 while host1's lease was live:\n%s", strings.Join(r.log, "\n"))
	}
	deadline := time.Now().Add(2*r.cfg.ttl + 5*time.Second)
	for time.Now().Before(deadline) {
		b.d.recoverAll(b.ctx) // a recovery round (every minute in a real process)
		r.opMount(a, "v0")
		if _, ok := r.obs.mountID(a, "v0"); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("host0 cannot mount v0 after host1 was killed mid-takeover and restarted:\n%s", strings.Join(r.log, "\n"))
}

// killMidTakeover: host0 creates, mounts and unmounts v0; host1 takes it
// over by force, and is killed once that write has landed but before its
// answer (held back) arrived, so before it recorded the new generation;
// then host1's process starts again.
func killMidTakeover(t *testing.T) (r *rrun, a, b *rhost) {
	t.Helper()
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "store")
	r = newRun(t, rconfig{seed: 1, hosts: 2, volumes: 1, ttl: 300 * time.Millisecond,
		newStore: func() (transfer.ObjectStore, error) { return localdir.New(dir) }})
	a, b = r.hosts[0], r.hosts[1]
	r.opCreate(a, "v0")
	r.opMount(a, "v0")
	id, _ := r.obs.mountID(a, "v0")
	r.opUnmount(a, "v0", id)
	time.Sleep(time.Second)
	b.fs.SetOpRates(faultstore.Rates{MaxDelay: time.Hour}, faultstore.OpReplace)
	b.fs.Inject(faultstore.OpReplace, faultstore.Late)
	b.run("takeover", true, func() { r.opTakeover(b, "v0", true) })
	st, _ := localdir.New(dir)
	eventually(t, "the takeover's write to land", func() bool {
		data, _, err := st.Load(context.Background(), "volumes/v0/head.json", 1<<20)
		return err == nil && strings.Contains(string(data), `"host1"`)
	})
	b.kill()
	b.busy = nil
	b.startProcess()
	return r, a, b
}
