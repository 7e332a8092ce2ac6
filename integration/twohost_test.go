package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portvol/portvol/internal/s3test"
)

// Names are this run's own, so that two runs of the suite on one machine
// (two worktrees' make test) do not remove each other's plugin, images or
// containers from the shared engine.
var (
	// e2ePlugin is the driver name of the plugin the two-host tests
	// install on both engines (docker volume create -d portvol-e2e-RUNID).
	e2ePlugin = "portvol-e2e-" + runID
	// e2eLabel marks every container the two-host tests start.
	e2eLabel = "portvol-e2e=" + runID
)

// diskTempDir holds what must live on a disk, not a tmpfs: the store's
// objects and the volumes' data.
const diskTempDir = "/var/tmp"

// vethRange holds the lans that join the private engines' network
// namespaces to the machine's (10.231.X.0/24). Private engines treat
// registries in it as insecure (plain HTTP), as the machine's engine does
// 127.0.0.0/8 by default.
const vethRange = "10.231.0.0/16"

// cluster is Docker hosts on one machine sharing one S3 store. By
// default two, A and B:
//
//   - host A is the machine's own engine; its plugin runs in the machine's
//     network namespace;
//   - host B is a private dockerd (privateEngine) in its own mount, network
//     and UTS namespaces; its plugin uses host networking, which is B's
//     namespace, plugged into a private network (lan) that the machine is
//     on too (10.231.X.0/24, the machine .1, B .11);
//   - versitygw listens on the machine's address on that network, so both
//     plugins reach it; with relays, each host reaches it through its own
//     relay (counting bytes, optionally slow).
//
// With clusterOptions.engines, the hosts are that many private engines
// instead, all on the lan (.11, .12, ...) and none of them the machine's
// engine: the swarm tests' nodes.
//
// Each host has its own plugin instance (portvol-e2e) with its own state
// directory and host id (its name), all from the same build with the same
// settings. Everything is removed when the test ends, also on failure.
type cluster struct {
	t      *testing.T
	s3     *s3Server
	prefix string // of the store inside the bucket
	net    *lan
	ip     string // the machine's address on the lan
	all    []*host
	a, b   *host // the first two hosts
	// image is the image for plain containers (sh, cat) on the hosts:
	// pgImage, or with clusterOptions.busybox a busybox image.
	image string
	// leaseTTL and mountWait are the plugins' settings (their defaults
	// when the plugin does not declare the setting).
	leaseTTL, mountWait time.Duration
	// volumeFS is the plugins' PORTVOL_VOLUME_FS (clusterOptions).
	volumeFS string
	// poolSize is the plugins' PORTVOL_POOL_SIZE (clusterOptions).
	poolSize string
}

// clusterOptions shape a cluster.
type clusterOptions struct {
	// engines names the hosts, each a private engine; nil: hostA (the
	// machine's engine) and hostB (a private one).
	engines   []string
	relays    bool          // route each host's S3 traffic through a relay
	leaseTTL  time.Duration // PORTVOL_LEASE_TTL; 0: the plugin's default
	mountWait time.Duration // PORTVOL_MOUNT_WAIT; 0: the plugin's default
	// volumeFS is the plugins' PORTVOL_VOLUME_FS; "" means directory:
	// tests that inspect a kept copy from the host need it there (a btrfs
	// pool is mounted inside the plugin's own mount namespace only).
	volumeFS string
	// poolSize is the plugins' PORTVOL_POOL_SIZE (sparse; used with
	// btrfs); "" means 4G.
	poolSize string
	// busybox gives the hosts a small busybox image (cluster.image)
	// instead of the PostgreSQL one, for tests that need no database:
	// quicker to set up, and no PostgreSQL needed on the machine.
	busybox bool
}

// host is one Docker host of a cluster.
type host struct {
	c        *cluster
	name     string // the plugin's host id
	eng      *engine
	pe       *privateEngine // nil for the machine's engine
	state    string         // the plugin's state directory on the machine
	relay    *relay         // nil without relays
	pluginID string
}

// newCluster sets up the hosts and the store, with the plugin built from
// this checkout installed on each (make plugin-rootfs, docker plugin
// create); they go away when t ends.
func newCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	start := time.Now()
	c := startHosts(t, opts, "plugin-rootfs")
	for _, h := range c.hosts() {
		h.installPlugin(opts)
	}
	var where []string
	for _, h := range c.hosts() {
		if h.pe != nil {
			where = append(where, fmt.Sprintf("%s (private dockerd in %s, %s)", h.name, h.pe.dir, h.pe.addr))
		} else {
			where = append(where, h.name+" (the machine's engine)")
		}
	}
	t.Logf("cluster (set up in %v): store %s on %s; %s; lease TTL %v, mount wait %v", time.Since(start).Round(100*time.Millisecond),
		c.prefix, c.s3.Addr(), strings.Join(where, ", "), c.leaseTTL, c.mountWait)
	return c
}

// startHosts sets up the hosts, the network between them, the store and
// the test image, with no plugin installed: newCluster installs the one
// built from this checkout; a test that installs its own (from a registry,
// say) gives each host h.newStateDir and h.settings(). It makes
// build/portvol (the CLI) and makeTargets first.
func startHosts(t *testing.T, opts clusterOptions, makeTargets ...string) *cluster {
	t.Helper()
	requireDocker(t)
	if !opts.busybox {
		requirePostgres(t)
	}
	s3test.Binary(t) // skip or fail early, before the slow parts
	ctx := context.Background()
	targets := append([]string{"build"}, makeTargets...)
	if out, err := run(ctx, "", "make", append([]string{"-C", repoRoot}, targets...)...); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(targets, " "), err, out)
	}
	// The plugin's documented defaults, until installPlugin sets others.
	c := &cluster{t: t, prefix: "e2e-" + runID + "-" + randomHex(2), leaseTTL: 30 * time.Second, mountWait: 20 * time.Second, volumeFS: opts.volumeFS, poolSize: cmp.Or(opts.poolSize, "4G")}
	if c.volumeFS == "" {
		c.volumeFS = "directory"
	}
	c.net = newLAN(t)
	c.ip = c.net.gw
	names := opts.engines
	if names == nil {
		a := &host{c: c, name: "hostA", eng: mainEngine}
		a.removeLeftovers()
		c.all = append(c.all, a)
		names = []string{"hostB"}
	}
	for _, name := range names {
		pe := startPrivateEngine(t, engineOptions{name: name, net: c.net, args: []string{"--insecure-registry=" + vethRange}})
		c.all = append(c.all, &host{c: c, name: name, eng: &pe.engine, pe: pe})
	}
	if len(c.all) > 1 {
		c.a, c.b = c.all[0], c.all[1]
	}
	c.s3 = startS3Server(t, c.ip)

	if opts.busybox {
		c.image = "portvol-e2e-busybox:" + runID
		for _, h := range c.hosts() {
			if err := h.eng.buildImageAs(ctx, c.image); err != nil {
				t.Fatalf("%s: %v", h.name, err)
			}
			if h.pe == nil {
				t.Cleanup(func() { h.eng.cli("rmi", "-f", c.image) })
			}
		}
	} else {
		c.image = pgImage
		c.importImage(buildPostgresImage(t))
	}
	if opts.relays {
		for _, h := range c.hosts() {
			h.relay = startRelay(t, c.ip, c.s3.Addr())
		}
	}
	return c
}

// hosts are the cluster's hosts: A and B, or the private engines named in
// clusterOptions.engines.
func (c *cluster) hosts() []*host { return c.all }

// removeLeftovers removes this run's containers, volumes and plugin from
// the host. (What a killed test binary left under another run's names
// stays: it could be a concurrent run's.)
func (h *host) removeLeftovers() {
	out, _ := h.eng.cli("ps", "-aq", "--filter", "label="+e2eLabel)
	for _, id := range strings.Fields(out) {
		h.eng.cli("rm", "-f", id)
	}
	out, _ = h.eng.cli("volume", "ls", "-q", "--filter", "driver="+e2ePlugin+":latest")
	for _, v := range strings.Fields(out) {
		h.eng.cli("volume", "rm", "-f", v)
	}
	h.eng.cli("plugin", "disable", "-f", e2ePlugin)
	h.eng.cli("plugin", "rm", "-f", e2ePlugin)
}

// newStateDir makes the host's plugin state directory (h.state) on disk
// with the S3 credentials file in it. When the test ends, this run's
// containers, volumes and plugin go from the host, then the directory.
func (h *host) newStateDir() {
	t := h.c.t
	t.Helper()
	dir, err := os.MkdirTemp(diskTempDir, "portvol-e2e-"+h.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	h.state = dir
	// Cleanups run last-in first-out: containers, volumes and the plugin
	// go before the engine, the store and the state directory.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s plugin log (tail):\n%s", h.name, tail(h.pluginLog(), 6000))
		}
		h.removeLeftovers()
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("clean up %s: %v", dir, err)
		}
	})
	// Credentials in a file under the state mount: plugin settings show
	// in docker plugin inspect.
	if err := os.WriteFile(filepath.Join(dir, "s3-credentials"), []byte(h.c.s3.credentialsFile()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// settings are the plugin settings that make the host a member of the
// cluster (its state directory, the store, its host id), for docker
// plugin set or the install line.
func (h *host) settings() []string {
	endpoint := h.c.s3.Addr()
	if h.relay != nil {
		endpoint = h.relay.Addr
	}
	return []string{
		"state.source=" + h.state,
		"PORTVOL_STORE=" + h.c.s3.storeURL(h.c.prefix, endpoint),
		"PORTVOL_HOST_ID=" + h.name,
		"AWS_SHARED_CREDENTIALS_FILE=/var/lib/portvol/s3-credentials",
		"PORTVOL_LOG_LEVEL=debug",
		"PORTVOL_VOLUME_FS=" + h.c.volumeFS,
		"PORTVOL_POOL_SIZE=" + h.c.poolSize, // sparse; only used with btrfs
	}
}

// installPlugin installs the plugin built by make plugin-rootfs under
// e2ePlugin, configured for the shared store, and enables it.
func (h *host) installPlugin(opts clusterOptions) {
	c, t := h.c, h.c.t
	t.Helper()
	h.newStateDir()
	h.eng.docker(t, "plugin", "create", e2ePlugin, filepath.Join(repoRoot, "build", "plugin"))
	declared := h.declaredEnv()
	settings := h.settings()
	optional := []struct {
		name string
		v    time.Duration
		dst  *time.Duration
	}{
		{"PORTVOL_LEASE_TTL", opts.leaseTTL, &c.leaseTTL},
		{"PORTVOL_MOUNT_WAIT", opts.mountWait, &c.mountWait},
	}
	for _, o := range optional {
		if o.v == 0 {
			continue
		}
		if !declared[o.name] {
			t.Logf("the plugin does not declare %s in plugin/config.json: using its default", o.name)
			continue
		}
		settings = append(settings, o.name+"="+o.v.String())
		*o.dst = o.v
	}
	h.eng.docker(t, append([]string{"plugin", "set", e2ePlugin}, settings...)...)
	h.eng.docker(t, "plugin", "enable", e2ePlugin)
	h.pluginID = h.eng.docker(t, "plugin", "inspect", "-f", "{{.Id}}", e2ePlugin)
}

// declaredEnv is the set of environment settings the installed plugin's
// config.json declares.
func (h *host) declaredEnv() map[string]bool {
	var env []struct{ Name string }
	out := h.eng.docker(h.c.t, "plugin", "inspect", "-f", "{{json .Config.Env}}", e2ePlugin)
	if err := json.Unmarshal([]byte(out), &env); err != nil {
		h.c.t.Fatalf("plugin env %q: %v", out, err)
	}
	m := map[string]bool{}
	for _, e := range env {
		m[e.Name] = true
	}
	return m
}

// socket is the plugin's socket as seen from the host (B: inside its mount
// namespace).
func (h *host) socket() string {
	return "/run/docker/plugins/" + h.pluginID + "/portvol.sock"
}

// command prepares a command to run on the host: for B inside its mount
// and network namespaces.
func (h *host) command(name string, args ...string) *exec.Cmd {
	if h.pe != nil {
		return h.pe.command(name, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// portvol runs the portvol CLI on the host against its plugin's socket and
// returns its combined output.
func (h *host) portvol(args ...string) (string, error) {
	return h.portvolAt(h.socket(), args...)
}

// portvolAt is portvol with the --socket flag given as socket ("" for
// none: the CLI finds the socket itself).
func (h *host) portvolAt(socket string, args ...string) (string, error) {
	if socket != "" {
		args = append(args, "--socket", socket)
	}
	cmd := h.command(filepath.Join(repoRoot, "build", "portvol"), args...)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
		case <-done:
		}
	}()
	out, err := cmd.CombinedOutput()
	close(done)
	return string(out), err
}

// mustPortvol runs portvol and fails the test on error.
func (h *host) mustPortvol(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.portvol(args...)
	if err != nil {
		t.Fatalf("%s: portvol %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// pluginPID is the process id of the host's plugin; 0 if none runs.
func (h *host) pluginPID() int { return pluginProcess(h.pluginID) }

// pluginLog is what the host's plugin logged (dockerd records plugin
// output in its own log, tagged with the plugin id); for diagnostics.
func (h *host) pluginLog() string {
	path := ""
	if h.pe != nil {
		path = filepath.Join(h.pe.dir, "dockerd.log")
	} else if pid, err := os.ReadFile("/var/run/docker.pid"); err == nil {
		path, _ = os.Readlink(filepath.Join("/proc", strings.TrimSpace(string(pid)), "fd", "1"))
	}
	b, err := os.ReadFile(path)
	if err != nil || h.pluginID == "" {
		return fmt.Sprintf("(no dockerd log found at %q)", path)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, h.pluginID) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// docker runs the docker CLI against the host's engine and fails the test
// on error.
func (h *host) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.eng.cli(args...)
	if err != nil {
		t.Fatalf("%s: docker %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// status is the volume's Status in docker volume inspect on this host.
func (h *host) status(t *testing.T, vol string) map[string]any {
	t.Helper()
	var st map[string]any
	out := h.docker(t, "volume", "inspect", "-f", "{{json .Status}}", vol)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%s: volume status %q: %v", h.name, out, err)
	}
	return st
}

// waitFor polls cond every 200 ms until it holds or limit passes; the
// limit keeps a broken test from hanging and asserts nothing about speed.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
