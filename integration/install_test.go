package integration

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInstallByName is the README's Install and Upgrade sections on two
// hosts: make push puts two versions of the plugin into a registry, both
// hosts install the first by name with their settings on the install line,
// a volume moves from A to B, and B upgrades to the second version while a
// running container has the volume mounted: the container keeps its data,
// B keeps the lease, and A, still on the first version, reads everything B
// wrote after the upgrade.
func TestInstallByName(t *testing.T) {
	start := time.Now()
	step := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
	c := startHosts(t, clusterOptions{busybox: true})
	reg := startRegistry(t, "127.0.0.1", c.ip)
	step("hosts, store and registry up")

	// make build stamps git describe; make push stamps VERSION, and its
	// tag is the version ('+' is no tag character: it becomes '-').
	described, err := run(t.Context(), "", "make", "-s", "--no-print-directory", "-C", repoRoot, "version")
	if err != nil {
		t.Fatalf("make version: %v\n%s", err, described)
	}
	if out, _ := c.a.portvolAt("", "version"); !strings.HasPrefix(out, "portvol "+strings.TrimSpace(described)+"\n") {
		t.Errorf("build/portvol version prints %q, want the version %q (git describe)", out, strings.TrimSpace(described))
	}
	repo := "portvol-e2e-" + runID
	v1, v2 := "v0.0.1-it."+runID, "v0.0.2-it+"+runID
	tag1, tag2 := v1, strings.ReplaceAll(v2, "+", "-")
	if ref := push(t, reg.addr("127.0.0.1")+"/"+repo, v1); ref != reg.addr("127.0.0.1")+"/"+repo+":"+tag1 {
		t.Fatalf("make push VERSION=%s pushed %s, want tag %s", v1, ref, tag1)
	}
	if ref := push(t, reg.addr("127.0.0.1")+"/"+repo, v2); ref != reg.addr("127.0.0.1")+"/"+repo+":"+tag2 {
		t.Fatalf("make push VERSION=%s pushed %s, want tag %s", v2, ref, tag2)
	}
	step("pushed two versions")
	// Each host reaches the registry at its own address.
	ref := func(h *host, tag string) string {
		ip := "127.0.0.1"
		if h.pe != nil {
			ip = c.ip
		}
		return reg.addr(ip) + "/" + repo + ":" + tag
	}

	// Host A: the state directory does not exist yet. The install pulls
	// and creates the plugin, and enabling it fails, naming the directory;
	// once it exists, docker plugin enable is all it takes (README).
	c.a.newStateDir()
	aside := c.a.state + ".aside"
	if err := os.Rename(c.a.state, aside); err != nil {
		t.Fatal(err)
	}
	out, err := c.a.installByName(ref(c.a, tag1))
	if err == nil || !strings.Contains(out, c.a.state) || !strings.Contains(out, "no such file or directory") {
		t.Errorf("hostA: install with a missing state directory: %v: %s", err, out)
	}
	if en := c.a.docker(t, "plugin", "inspect", "-f", "{{.Enabled}} {{.PluginReference}}", e2ePlugin); en != "false "+ref(c.a, tag1) {
		t.Errorf("hostA: after the failed enable the plugin is %q, want installed and disabled", en)
	}
	if err := os.Rename(aside, c.a.state); err != nil {
		t.Fatal(err)
	}
	c.a.docker(t, "plugin", "enable", "--timeout", "0", e2ePlugin)

	c.b.newStateDir()
	if out, err := c.b.installByName(ref(c.b, tag1)); err != nil {
		t.Fatalf("hostB: docker plugin install %s: %v\n%s", ref(c.b, tag1), err, out)
	}
	for _, h := range c.hosts() {
		if got := h.pluginBinaryVersion(t); got != "portvol "+v1 {
			t.Errorf("%s: the installed plugin's portvol version says %q, want portvol %s", h.name, got, v1)
		}
	}

	step("installed on both hosts")
	// A writes, B reads: both installs joined the same store under their
	// own host ids.
	vol := c.volume(t)
	c.a.runOnce(t, vol, "echo from-A > /data/f")
	if got := c.b.runOnce(t, vol, "cat /data/f"); got != "from-A" {
		t.Fatalf("hostB reads %q from the volume hostA wrote, want from-A", got)
	}

	step("moved a volume from A to B")
	// B upgrades while a container has the volume mounted.
	ctr := randomName("up-" + runID)
	c.b.docker(t, "run", "-d", "--name", ctr, "--label", e2eLabel, "--network", "none", "--stop-timeout", "1",
		"-v", vol+":/data", c.image, "sh", "-c", "echo before >> /data/log; exec sleep 600")
	var gen int
	waitFor(t, time.Minute, "hostB to hold the volume", func() bool {
		st := c.b.status(t, vol)
		gen, _ = intField(st, "generation")
		return st["lease"] == "held" && st["owner"] == "hostB" && st["mounts"] == float64(1)
	})
	oldID := c.b.pluginID
	c.b.docker(t, "plugin", "disable", "-f", e2ePlugin)
	c.b.docker(t, "exec", ctr, "sh", "-c", "echo during >> /data/log")
	c.b.docker(t, "plugin", "upgrade", "--skip-remote-check", "--grant-all-permissions", e2ePlugin, ref(c.b, tag2))
	// dockerd 20.10 puts the state mount's source back to its default on
	// upgrade (README): set it again before enabling.
	c.b.docker(t, "plugin", "set", e2ePlugin, "state.source="+c.b.state)
	c.b.docker(t, "plugin", "enable", "--timeout", "0", e2ePlugin)
	if id := c.b.docker(t, "plugin", "inspect", "-f", "{{.Id}}", e2ePlugin); id != oldID {
		t.Errorf("hostB: the upgrade changed the plugin id from %s to %s", oldID, id)
	}
	if got := c.b.docker(t, "plugin", "inspect", "-f", "{{.PluginReference}}", e2ePlugin); got != ref(c.b, tag2) {
		t.Errorf("hostB: plugin reference after the upgrade is %s, want %s", got, ref(c.b, tag2))
	}
	step("upgraded B")
	c.b.docker(t, "exec", ctr, "sh", "-c", "echo after >> /data/log")
	if got := c.b.docker(t, "exec", ctr, "cat", "/data/log"); got != "before\nduring\nafter" {
		t.Errorf("hostB: the container's volume through the upgrade holds %q", got)
	}
	st := c.b.status(t, vol)
	if g, _ := intField(st, "generation"); st["lease"] != "held" || st["owner"] != "hostB" || g != gen || st["mounts"] != float64(1) || st["local"] != "mounted" {
		t.Errorf("hostB: status after the upgrade is %v, want the lease held by hostB at generation %d, one mount, local mounted", st, gen)
	}
	if got := c.b.pluginBinaryVersion(t); got != "portvol "+v2 {
		t.Errorf("hostB: the upgraded plugin's portvol version says %q, want portvol %s", got, v2)
	}
	waitFor(t, 30*time.Second, "hostB's plugin to log its start", func() bool { return len(c.b.loggedVersions()) >= 2 })
	if got := c.b.loggedVersions(); !slices.Equal(got, []string{v1, v2}) {
		t.Errorf("hostB: the plugin logged the versions %q at its starts, want %q", got, []string{v1, v2})
	}
	if got := c.a.loggedVersions(); len(got) != 1 || got[0] != v1 {
		t.Errorf("hostA: the plugin logged the versions %q at its starts, want [%s]", got, v1)
	}

	// The container ends: B's upgraded plugin knows its mount from before
	// the upgrade, publishes the final snapshot and lets go; A, still on
	// the first version, gets everything.
	step("checked B after the upgrade")
	c.b.docker(t, "stop", ctr)
	waitFor(t, time.Minute, "hostB's final snapshot and release", func() bool {
		st := c.b.status(t, vol)
		return st["lease"] == "released" && st["local"] == "ready" && st["local_snapshot"] == st["head_snapshot"]
	})
	if got := c.a.runOnce(t, vol, "cat /data/log"); got != "before\nduring\nafter" {
		t.Errorf("hostA reads %q after hostB's upgrade, want before, during, after", got)
	}
	if st := c.a.status(t, vol); st["owner"] != "hostA" {
		t.Errorf("hostA: status after reading is %v, want hostA the owner", st)
	}
	if g := c.a.generation(t, vol); g <= gen {
		t.Errorf("hostA: generation %d after taking the volume from hostB at %d", g, gen)
	}
	c.b.docker(t, "rm", ctr)
	step("moved the volume back to A")
}

// intField is a number of a volume status as an int.
func intField(st map[string]any, key string) (int, bool) {
	f, ok := st[key].(float64)
	return int(f), ok
}
