package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	pluginName = "portvol-it" // the driver name of the managed plugin under test
	testImage  = "portvol-it-busybox:latest"
)

// cmdTimeout bounds every command the tests run; the handoff bench raises
// it for building large databases.
var cmdTimeout = 3 * time.Minute

var (
	repoRoot, _ = filepath.Abs("..")
	runID       = randomHex(4) // makes volume and container names unique per run

	setupOnce sync.Once
	setupErr  error
	// pluginState is the managed plugin's state directory on the host.
	pluginState string
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupAll()
	if left := leakedPlugins(); len(left) > 0 {
		// A test plugin left enabled answers (or hangs) every lookup of
		// an unknown volume on the engine: later tests and runs pay for it.
		fmt.Fprintf(os.Stderr, "integration: plugins this run installed are still on the engine after it: %s\n", strings.Join(left, ", "))
		code = cmp.Or(code, 1)
	}
	os.Exit(code)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// requireDocker skips (or, under CI=true, fails) when the tests cannot run.
func requireDocker(t *testing.T) {
	t.Helper()
	reason := ""
	switch {
	case os.Geteuid() != 0:
		reason = "needs root (managed plugins, bind mounts, /run/docker/plugins)"
	default:
		if _, err := exec.LookPath("docker"); err != nil {
			reason = "needs the docker CLI"
		} else if out, err := run(context.Background(), "", "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
			reason = "needs a running Docker engine: " + strings.TrimSpace(out)
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration test cannot run under CI=true: %s", reason)
	}
	t.Skip(reason)
}

// requireSetup builds the test image and installs the managed plugin once.
func requireSetup(t *testing.T) {
	t.Helper()
	requireDocker(t)
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("setup: %v", setupErr)
	}
}

func setup() error {
	ctx := context.Background()
	removeLeftovers(ctx)
	if err := mainEngine.buildImage(ctx); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portvol-it-state-")
	if err != nil {
		return err
	}
	pluginState = dir
	// The README's install command, under the test's own name and state.
	out, err := run(ctx, "", "make", "-C", repoRoot, "install", "PLUGIN_NAME="+pluginName, "PLUGIN_STATE_DIR="+dir)
	if err != nil {
		return fmt.Errorf("make install: %v\n%s", err, out)
	}
	return nil
}

// removeLeftovers clears what an interrupted earlier run may have left.
func removeLeftovers(ctx context.Context) {
	out, _ := run(ctx, "", "docker", "ps", "-aq", "--filter", "label=portvol-it")
	for _, id := range strings.Fields(out) {
		run(ctx, "", "docker", "rm", "-f", id)
	}
	out, _ = run(ctx, "", "docker", "volume", "ls", "-q", "--filter", "driver="+pluginName+":latest")
	for _, v := range strings.Fields(out) {
		run(ctx, "", "docker", "volume", "rm", "-f", v)
	}
}

// leakedPlugins lists the plugins on the machine's engine that this run
// installed and did not remove.
func leakedPlugins() []string {
	if os.Geteuid() != 0 {
		return nil
	}
	out, err := run(context.Background(), "", "docker", "plugin", "ls", "--format", "{{.Name}}")
	if err != nil {
		return nil
	}
	var left []string
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, pluginName+":") || strings.Contains(name, runID) {
			left = append(left, name)
		}
	}
	return left
}

func cleanupAll() {
	if os.Geteuid() != 0 {
		return
	}
	ctx := context.Background()
	removeLeftovers(ctx)
	run(ctx, "", "docker", "plugin", "disable", "-f", pluginName)
	run(ctx, "", "docker", "plugin", "rm", "-f", pluginName)
	run(ctx, "", "docker", "rmi", "-f", testImage)
	if pluginState != "" {
		os.RemoveAll(pluginState)
	}
}

// buildImage makes testImage, a tiny image from Debian's static busybox,
// with docker import: there is no registry to pull from.
func (e *engine) buildImage(ctx context.Context) error {
	return e.buildImageAs(ctx, testImage)
}

// buildImageAs makes the busybox image under name, unless it exists.
func (e *engine) buildImageAs(ctx context.Context, name string) error {
	if _, err := e.cli("image", "inspect", name); err == nil {
		return nil
	}
	bb := ""
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			bb = p
			break
		}
	}
	if bb == "" {
		return fmt.Errorf("no static busybox: apt-get install busybox-static")
	}
	dir, err := os.MkdirTemp("", "portvol-it-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	if out, err := run(ctx, "", "cp", bb, filepath.Join(dir, "bin", "busybox")); err != nil {
		return fmt.Errorf("copy busybox: %v %s", err, out)
	}
	list, err := run(ctx, "", bb, "--list")
	if err != nil {
		return fmt.Errorf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(list) {
		if applet != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
				return err
			}
		}
	}
	for _, d := range []string{"tmp", "etc", "data"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	if out, err := runEnv(ctx, e.env(), "", "sh", "-c", fmt.Sprintf("tar -C %s -c . | docker import - %s", dir, name)); err != nil {
		return fmt.Errorf("docker import: %v %s", err, out)
	}
	return nil
}

// run runs a command and returns its combined output.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	return runEnv(ctx, nil, stdin, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(ctx context.Context, env []string, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if took := time.Since(start); took > slowCommand {
		// A CI run that is slow for a while shows here which call waited.
		fmt.Fprintf(os.Stderr, "integration: slow command (%v, %v): %s %s\n",
			took.Round(time.Millisecond), err, name, strings.Join(args, " "))
	}
	return out.String(), err
}

// slowCommand is how long a command may take before runEnv reports it.
const slowCommand = 20 * time.Second

// engine is a Docker engine the tests drive: the machine's own (host "",
// from the environment) or a private one (see engine_test.go).
type engine struct {
	host string // DOCKER_HOST
}

// mainEngine is the engine of the machine.
var mainEngine = &engine{}

func (e *engine) env() []string {
	if e.host == "" {
		return nil
	}
	return []string{"DOCKER_HOST=" + e.host}
}

// cli runs the docker CLI against e.
func (e *engine) cli(args ...string) (string, error) {
	return runEnv(context.Background(), e.env(), "", "docker", args...)
}

// docker runs the docker CLI against the machine's engine and fails the
// test on error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	return mainEngine.docker(t, args...)
}

// docker runs the docker CLI and fails the test on error.
func (e *engine) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.cli(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// dockerFails runs the docker CLI against the machine's engine, fails the
// test if it succeeds, and returns its output.
func dockerFails(t *testing.T, args ...string) string {
	t.Helper()
	return mainEngine.dockerFails(t, args...)
}

func (e *engine) dockerFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.cli(args...)
	if err == nil {
		t.Fatalf("docker %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// volume creates a uniquely named volume of driver and removes it when the
// test ends.
func (e *engine) volume(t *testing.T, driver, base string, opts ...string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s", base, runID)
	args := append([]string{"volume", "create", "-d", driver}, opts...)
	e.docker(t, append(args, name)...)
	t.Cleanup(func() { e.cli("volume", "rm", "-f", name) })
	return name
}

// container starts a long-running container that uses vol at /data.
func (e *engine) container(t *testing.T, vol string) string {
	t.Helper()
	name := fmt.Sprintf("c-%s-%s", randomHex(3), runID)
	e.docker(t, "run", "-d", "--name", name, "--label", "portvol-it", "--network", "none",
		"-v", vol+":/data", testImage, "sleep", "600")
	t.Cleanup(func() { e.cli("rm", "-f", name) })
	return name
}

// runOnce runs sh -c script in a throwaway container with vol at /data.
// --network none: the tests need no network, and this machine's engine
// may have no usable default bridge.
func (e *engine) runOnce(t *testing.T, vol, script string) string {
	t.Helper()
	return e.docker(t, "run", "--rm", "--label", "portvol-it", "--network", "none", "-v", vol+":/data", testImage, "sh", "-c", script)
}

// status returns the Status map docker volume inspect shows (from the
// plugin's Get).
func (e *engine) status(t *testing.T, vol string) map[string]any {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(e.docker(t, "volume", "inspect", "-f", "{{json .Status}}", vol)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *engine) mounts(t *testing.T, vol string) int {
	t.Helper()
	n, _ := e.status(t, vol)["mounts"].(float64)
	return int(n)
}

// eventually polls cond for up to a minute; the bound keeps a broken test
// from hanging and asserts nothing about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
