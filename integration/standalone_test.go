package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// standaloneDriver is the driver name of the host-socket test server: the
// socket's base name.
const standaloneDriver = "portvol-standalone-test"

// Standalone mode: portvol serve as a host process, found by dockerd through
// its socket in /run/docker/plugins. It runs against a private engine (see
// privateEngine for why).
func TestStandaloneSocket(t *testing.T) {
	requireDocker(t)
	if out, err := run(context.Background(), "", "make", "-C", repoRoot, "build"); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	pe := startPrivateEngine(t, engineOptions{})
	state := filepath.Join(pe.dir, "state")
	sock := "/run/docker/plugins/" + standaloneDriver + ".sock"
	logf, err := os.Create(filepath.Join(pe.dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv := pe.command(filepath.Join(repoRoot, "build", "portvol"), "serve",
		"--socket", sock, "--state-dir", state, "--log-level", "debug",
		"--volume-fs", "directory") // a host-run btrfs pool would stay mounted on the host after the test
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	var exitErr error
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case exitErr = <-exited:
		case <-time.After(15 * time.Second):
			srv.Process.Kill()
			exitErr = <-exited
			t.Error("portvol serve ignored SIGTERM for 15 s")
		}
	}
	v := "sa-" + runID
	removed := false
	t.Cleanup(func() {
		// Before the server stops: once it is gone, every volume call to
		// this engine waits ~15 s on the dead socket.
		if !removed {
			pe.cli("volume", "rm", "-f", v)
		}
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("serve log:\n%s", b)
		}
	})
	inNamespace := func(args ...string) error { return pe.command(args[0], args[1:]...).Run() }
	eventually(t, "the standalone socket", func() bool { return inNamespace("test", "-S", sock) == nil })

	pe.docker(t, "volume", "create", "-d", standaloneDriver, v)
	pe.runOnce(t, v, "echo standalone > /data/f")
	if got := pe.runOnce(t, v, "cat /data/f"); got != "standalone" {
		t.Fatalf("read back %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(state, "volumes", v, "data", "f")); err != nil || string(b) != "standalone\n" {
		t.Errorf("state dir has %q, %v", b, err)
	}
	// Standalone Mountpoints are host paths under <state-dir>/mnt.
	c := pe.container(t, v)
	if mp := pe.docker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", v); mp != filepath.Join(state, "mnt", v) {
		t.Errorf("Mountpoint %q, want %s", mp, filepath.Join(state, "mnt", v))
	}
	src := filepath.Join(t.TempDir(), "g")
	os.WriteFile(src, []byte("cp\n"), 0o644)
	pe.docker(t, "cp", src, c+":/data/g")
	if n := pe.mounts(t, v); n != 1 {
		t.Errorf("mounts after docker cp = %d", n)
	}
	pe.docker(t, "rm", "-f", c)
	if out := pe.dockerFails(t, "volume", "create", "-d", standaloneDriver, "a/b"); !strings.Contains(out, "invalid volume name") {
		t.Errorf("bad name: %s", out)
	}
	if out := pe.dockerFails(t, "volume", "create", "-d", standaloneDriver, "-o", "sise=1G", "sized-"+runID); !strings.Contains(out, `unknown option "sise"`) {
		t.Errorf("bad option: %s", out)
	}
	// This server keeps directories (--volume-fs directory): no size limits.
	if out := pe.dockerFails(t, "volume", "create", "-d", standaloneDriver, "-o", "size=1G", "sized-"+runID); !strings.Contains(out, "option size needs btrfs volumes") {
		t.Errorf("size limit on directory volumes: %s", out)
	}
	pe.docker(t, "volume", "rm", v)
	removed = true
	if _, err := os.Stat(filepath.Join(state, "volumes", v)); !os.IsNotExist(err) {
		t.Errorf("data left after rm: %v", err)
	}

	stop()
	if exitErr != nil {
		t.Errorf("portvol serve exit after SIGTERM: %v", exitErr)
	}
	if inNamespace("test", "-e", sock) == nil {
		t.Errorf("socket %s left after SIGTERM", sock)
	}
}
