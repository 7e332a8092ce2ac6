package integration

import (
	"bufio"
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
	dir     string
	holder  *exec.Cmd // keeps the mount namespace alive
	dockerd *exec.Cmd
	exited  chan error
	// args are extra dockerd flags (--insecure-registry ...), kept for
	// restarts.
	args []string
}

// startPrivateEngine starts a private dockerd with the extra dockerd
// flags args; it goes away when t ends.
func startPrivateEngine(t *testing.T, args ...string) *privateEngine {
	t.Helper()
	// Short path: unix socket paths under the exec root are limited.
	dir, err := os.MkdirTemp("/tmp", "pvit-")
	if err != nil {
		t.Fatal(err)
	}
	pe := &privateEngine{engine: engine{host: "unix://" + filepath.Join(dir, "d.sock")}, t: t, dir: dir, args: args}
	t.Cleanup(pe.stop)
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/docker/plugins", 0o755); err != nil {
		t.Fatal(err)
	}
	pe.holder = exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c",
		"ip link set lo up && mount -t tmpfs -o mode=755 tmpfs /run/docker/plugins && echo ready && exec sleep 86400")
	pe.holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := pe.holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pe.holder.Stderr = os.Stderr
	if err := pe.holder.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("mount namespace for the private engine: %q", line)
	}
	pe.startDockerd()
	if err := pe.buildImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pe
}

// command runs name inside the private mount and network namespaces.
func (pe *privateEngine) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pe.holder.Process.Pid), "-m", "-n", "--", name}, args...)...)
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
		"--containerd-namespace", "pvit", "--containerd-plugins-namespace", "pvitp"}, pe.args...)...)
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
	if pe.holder != nil && pe.holder.Process != nil {
		pe.holder.Process.Kill()
		pe.holder.Wait()
	}
	if pe.t.Failed() {
		pe.t.Logf("private dockerd log (tail):\n%s", pe.log())
	}
	// The namespace and its mounts are gone with its last process.
	if err := os.RemoveAll(pe.dir); err != nil {
		pe.t.Logf("clean up %s: %v", pe.dir, err)
	}
}

// An engine restart: dockerd stops the containers (Unmount), stops the
// plugin and unmounts everything under it, then starts the plugin again,
// asks Get for every volume it knows (forgetting those reported missing)
// and mounts the volumes of restarting containers under new IDs.
func TestEngineRestart(t *testing.T) {
	requireDocker(t)
	pe := startPrivateEngine(t)
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
