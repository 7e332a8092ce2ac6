package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// plugin is one host whose process can be killed in the middle of
// answering a Mount, and started again in the same boot or a new one.
type plugin struct {
	*env
	mu     sync.Mutex
	boot   string // the boot id the next start sees
	killAt string // stage at which the next Mount's answer dies
	frozen chan struct{}
}

func newPlugin(t *testing.T, host, store string) *plugin {
	p := &plugin{env: newHost(t, host, store), boot: "boot-1", frozen: make(chan struct{})}
	t.Cleanup(func() { close(p.frozen) }) // the "killed" handler may go on, on a closed database
	p.tune = func(d *Driver) {
		d.bootID = func() (string, error) { p.mu.Lock(); defer p.mu.Unlock(); return p.boot, nil }
		d.answerHook = func(stage, _, _ string) {
			p.mu.Lock()
			die := stage == p.killAt
			if die {
				p.killAt = ""
			}
			p.mu.Unlock()
			if die {
				<-p.frozen // the process is gone: nothing after this runs while it lives
			}
		}
	}
	p.start(nil)
	return p
}

// mountKilled sends Mount(name, id) and kills the plugin (kill -9: no
// clean-up, state stays on disk) at stage of its answer; it returns
// whether the caller got a successful answer.
func (p *plugin) mountKilled(name, id, stage string) bool {
	p.t.Helper()
	p.mu.Lock()
	p.killAt = stage
	p.mu.Unlock()
	type result struct {
		status int
		out    map[string]any
		err    error
	}
	done := make(chan result, 1)
	go func() {
		s, out, err := p.call(context.Background(), "VolumeDriver.Mount", mountID(name, id))
		done <- result{s, out, err}
	}()
	eventually(p.t, "the Mount to reach "+stage, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.killAt == "" })
	if stage == stageAnswered {
		<-done // the answer is out before the process dies
		p.stop()
		return true
	}
	p.stop()
	r := <-done
	return r.err == nil && r.status == 200 && r.out["Err"] == nil
}

// A plugin killed between recording a Mount's count and answering it: the
// count is dropped at its next start (dockerd saw the Mount fail), so
// dockerd's retry of that Mount counts once and its Unmount releases the
// volume. Killed after its answer went out, the count is kept (a
// container uses it) until its Unmount, a reboot, or a Remove.
func TestKilledWhileAnsweringMount(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	a := newPlugin(t, "hostA", store)
	b := newHost(t, "hostB", store)
	b.start(nil)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v"})

	// Killed before a byte of the answer: dockerd got an error.
	if a.mountKilled("v", "x", stageRecorded) {
		t.Fatal("the caller got an answer from a plugin killed before answering")
	}
	a.start(nil)
	if n := a.mounts("v"); n != 0 {
		t.Errorf("after the restart v counts %d mount(s) nobody will unmount", n)
	}
	mp := a.ok("VolumeDriver.Mount", mountID("v", "x"))["Mountpoint"].(string) // dockerd's retry
	os.WriteFile(filepath.Join(mp, "f"), []byte("1"), 0o644)
	a.ok("VolumeDriver.Unmount", mountID("v", "x"))
	a.released("v")

	// Killed after the answer went out: a container may be using it.
	a.mountKilled("v", "y", stageAnswered)
	a.start(nil)
	st := a.status("v")
	if st["mounts"].(float64) != 1 || st["unconfirmed_mounts"] != float64(1) || st["lease"] != "held" {
		t.Fatalf("after a kill with the answer out, status %v; want the mount kept, unconfirmed, the lease held", st)
	}
	if msg := b.fail("VolumeDriver.Mount", mountID("v", "b0")); !strings.Contains(msg, "hostA") {
		t.Errorf("B's Mount while A's container may still write: %q", msg)
	}
	os.WriteFile(filepath.Join(mp, "f"), []byte("2"), 0o644) // the container goes on writing
	a.ok("VolumeDriver.Unmount", mountID("v", "y"))          // and stops
	a.released("v")
	mpb := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mpb, "f")); string(got) != "2" {
		t.Errorf("B reads %q, want the container's last write", got)
	}
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")

	// The same, then the host reboots: no container of that boot runs.
	a.mountKilled("v", "z", stageAnswered)
	a.mu.Lock()
	a.boot = "boot-2"
	a.mu.Unlock()
	a.start(nil)
	a.released("v")
	b.ok("VolumeDriver.Mount", mountID("v", "b2"))
	b.ok("VolumeDriver.Unmount", mountID("v", "b2"))
	b.released("v")

	// The same, then dockerd removes the volume: it does so only when no
	// container uses it.
	a.mountKilled("v", "w", stageAnswered)
	a.start(nil)
	a.ok("VolumeDriver.Remove", map[string]string{"Name": "v"})
	eventually(t, "B to see v removed", func() bool {
		_, out, _ := b.call(context.Background(), "VolumeDriver.Get", map[string]string{"Name": "v"})
		msg, _ := out["Err"].(string)
		return strings.Contains(msg, "does not exist")
	})
}
