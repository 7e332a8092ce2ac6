package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// privateEngine is a second dockerd that only these tests use, in a mount
// namespace of its own with a private tmpfs on /run/docker/plugins, and a
// network namespace of its own: a dockerd started with --bridge=none deletes
// the docker0 interface of the namespace it runs in, which would break the
// machine's engine if they shared one.
//
// Why not the machine's engine: dockerd caches a legacy (socket) volume
// driver by name for the rest of its life once it has used it, and after
// the socket goes away every docker volume call waits ~15 s on it until the
// engine restarts. Any engine that ever saw the standalone test socket would
// stay slow, and /run/docker/plugins is shared by all engines of a host, so
// the socket must not be visible to the machine's engine at all. Restarting
// an engine is also only safe on one the tests own.
type privateEngine struct {
	engine
	t       *testing.T
	name    string // its host name (UTS namespace of its own)
	net     *lan   // the network it is plugged into; nil: none
	addr    string // its address on net
	dir     string
	holder  *exec.Cmd // keeps the namespaces alive
	dockerd *exec.Cmd
	exited  chan error
	// args are extra dockerd flags (--insecure-registry ...), kept for
	// restarts.
	args []string
}

// engineOptions shape a private engine.
type engineOptions struct {
	name string   // host name; default "pvit"
	net  *lan     // plug it into this network (eth0); nil: loopback only
	args []string // extra dockerd flags (--insecure-registry ...)
}

// startPrivateEngine starts a private dockerd; it goes away when t ends.
func startPrivateEngine(t *testing.T, opts engineOptions) *privateEngine {
	t.Helper()
	if opts.name == "" {
		opts.name = "pvit"
	}
	// Short path: unix socket paths under the exec root are limited.
	dir, err := os.MkdirTemp("/tmp", "pvit-")
	if err != nil {
		t.Fatal(err)
	}
	pe := &privateEngine{engine: engine{host: "unix://" + filepath.Join(dir, "d.sock")}, t: t, name: opts.name, net: opts.net, dir: dir, args: opts.args}
	t.Cleanup(pe.stop)
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/docker/plugins", 0o755); err != nil {
		t.Fatal(err)
	}
	pe.boot()
	if err := pe.buildImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pe
}

// boot makes the engine's namespaces (mount, network, UTS), plugs it into
// its network and starts dockerd.
func (pe *privateEngine) boot() {
	t := pe.t
	t.Helper()
	pe.holder = exec.Command("unshare", "--mount", "--net", "--uts", "--propagation", "private", "sh", "-c",
		"hostname "+pe.name+" && ip link set lo up && mount -t tmpfs -o mode=755 tmpfs /run/docker/plugins && echo ready && exec sleep 86400")
	pe.holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waitReady(t, pe.holder, "namespaces for the private engine "+pe.name)
	if pe.net != nil {
		pe.addr = pe.net.attach(pe)
	}
	pe.startDockerd()
}

// command runs name inside the private mount, network and UTS namespaces.
func (pe *privateEngine) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pe.holder.Process.Pid), "-m", "-n", "-u", "--", name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (pe *privateEngine) startDockerd() {
	t := pe.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(pe.dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	pe.dockerd = pe.command("dockerd", append([]string{
		"-H", pe.host, "-p", filepath.Join(pe.dir, "d.pid"),
		"--config-file", filepath.Join(pe.dir, "daemon.json"),
		"--data-root", pe.dataRoot(), "--exec-root", filepath.Join(pe.dir, "x"),
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver", "vfs",
		"--containerd-namespace", "pvit-" + pe.name, "--containerd-plugins-namespace", "pvitp-" + pe.name}, pe.args...)...)
	pe.dockerd.Stdout, pe.dockerd.Stderr = logf, logf
	if err := pe.dockerd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	pe.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(pe.dockerd, pe.exited)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := pe.cli("info", "--format", "{{.ServerVersion}}"); err == nil {
			return
		}
		select {
		case err := <-pe.exited:
			pe.dockerd = nil
			t.Fatalf("private dockerd exited: %v\n%s", err, pe.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("private dockerd does not answer:\n%s", pe.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dataRoot is the engine's --data-root.
func (pe *privateEngine) dataRoot() string { return filepath.Join(pe.dir, "data") }

// stopDockerd stops dockerd the way an administrator does (SIGTERM).
func (pe *privateEngine) stopDockerd() {
	if pe.dockerd == nil {
		return
	}
	pe.dockerd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pe.exited:
	case <-time.After(time.Minute):
		pe.t.Errorf("private dockerd ignored SIGTERM for a minute")
		pe.dockerd.Process.Kill()
		<-pe.exited
	}
	pe.dockerd = nil
}

// restartDockerd is an engine restart without live-restore.
func (pe *privateEngine) restartDockerd() {
	pe.t.Helper()
	pe.stopDockerd()
	pe.startDockerd()
}

func (pe *privateEngine) log() string {
	b, _ := os.ReadFile(filepath.Join(pe.dir, "dockerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (pe *privateEngine) stop() {
	if pe.dockerd != nil {
		out, _ := pe.cli("ps", "-aq")
		for _, id := range strings.Fields(out) {
			pe.cli("rm", "-f", id)
		}
		pe.stopDockerd()
	}
	// Whatever outlived dockerd (shims and containers a swarm started
	// again meanwhile) goes with the namespaces.
	pe.powerOff()
	if pe.t.Failed() {
		pe.t.Logf("private dockerd %s log (tail):\n%s", pe.name, pe.log())
	}
	// The namespaces and their mounts are gone with their last process.
	if err := os.RemoveAll(pe.dir); err != nil {
		pe.t.Logf("clean up %s: %v", pe.dir, err)
	}
}

// powerOff is the machine losing power: every process in the engine's
// namespaces and everything they started (containerd, its shims, the
// plugin, the containers) is stopped, then killed, at once; the mounts go
// with the namespaces. Its disk stays: the data root, the plugins' state
// directories. powerOn boots it again.
func (pe *privateEngine) powerOff() {
	if pe.holder == nil {
		return
	}
	procs := pe.processes()
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGKILL)
	}
	if pe.dockerd != nil {
		<-pe.exited
		pe.dockerd = nil
	}
	pe.holder.Wait()
	pe.holder = nil
	// The others are not our children: wait until the kernel has them.
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// powerOn boots the engine again after powerOff: new namespaces, the same
// address on its network, the same disk.
func (pe *privateEngine) powerOn() {
	pe.t.Helper()
	pe.boot()
}

// processes lists the processes in the engine's network namespace and
// all their descendants (containers have namespaces of their own; their
// processes are children of shims that run in the engine's).
func (pe *privateEngine) processes() []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pe.holder.Process.Pid))
	if err != nil {
		return []int{pe.holder.Process.Pid}
	}
	parent := map[int]int{}
	in := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && l == ns {
			in[pid] = true
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...: comm may hold spaces and parentheses.
			if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	var procs []int
	for pid := range in {
		procs = append(procs, pid)
	}
	return procs
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// An engine restart: dockerd stops the containers (Unmount), stops the
// plugin and unmounts everything under it, then starts the plugin again,
// asks Get for every volume it knows (forgetting those reported missing)
// and mounts the volumes of restarting containers under new IDs.
func TestEngineRestart(t *testing.T) {
	requireDocker(t)
	pe := startPrivateEngine(t, engineOptions{})
	state := filepath.Join(pe.dir, "state")
	if out, err := runEnv(context.Background(), pe.env(), "", "make", "-C", repoRoot, "install",
		"PLUGIN_NAME="+pluginName, "PLUGIN_STATE_DIR="+state); err != nil {
		t.Fatalf("make install into the private engine: %v\n%s", err, out)
	}
	v := pe.volume(t, pluginName, "restart")
	idle := pe.volume(t, pluginName, "idle")
	c := fmt.Sprintf("restart-%s", runID)
	pe.docker(t, "run", "-d", "--name", c, "--restart", "always", "--stop-timeout", "1", "--network", "none",
		"-v", v+":/data", testImage, "sh", "-c", "echo boot >> /data/boots; exec sleep 600")
	eventually(t, "the first boot", func() bool {
		out, _ := pe.cli("exec", c, "cat", "/data/boots")
		return strings.TrimSpace(out) == "boot"
	})

	pe.restartDockerd()

	eventually(t, "the container's second boot", func() bool {
		out, _ := pe.cli("exec", c, "cat", "/data/boots")
		return strings.TrimSpace(out) == "boot\nboot"
	})
	if n := pe.mounts(t, v); n != 1 {
		t.Errorf("mounts after the engine restart = %d, want 1", n)
	}
	ls := pe.docker(t, "volume", "ls", "-q")
	if !strings.Contains(ls, v) || !strings.Contains(ls, idle) {
		t.Errorf("dockerd forgot volumes over the restart:\n%s", ls)
	}
	src := filepath.Join(t.TempDir(), "g")
	os.WriteFile(src, []byte("cp\n"), 0o644)
	pe.docker(t, "cp", src, c+":/data/g")
	pe.docker(t, "rm", "-f", c)
	if n := pe.mounts(t, v); n != 0 {
		t.Errorf("mounts after the container is gone = %d", n)
	}
	if got := pe.runOnce(t, v, "cat /data/boots /data/g"); got != "boot\nboot\ncp" {
		t.Errorf("data after the engine restart: %q", got)
	}
	pe.docker(t, "volume", "rm", v, idle)
}
