package hosttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Short leases keep the tests fast: a dead host's lease expires after 3 s.
const (
	leaseTTL  = "3s"
	mountWait = "2s"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// requireRoot skips without root, or fails under CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("these tests bind-mount volumes and need root; CI must run them as root")
	}
	t.Skip("needs root: portvol bind-mounts volumes")
}

// portvolBinary builds cmd/portvol once per test run.
func portvolBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portvol-hosttest-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portvol")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/portvol/portvol/cmd/portvol").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// host is one `portvol serve` process and its directories.
type host struct {
	t       *testing.T
	name    string
	bin     string
	dir     string
	sock    string
	store   string
	env     []string
	logPath string

	cmd    *exec.Cmd
	exited chan struct{}
	client *http.Client
}

func newHost(t *testing.T, name, store string, env []string) *host {
	t.Helper()
	dir := t.TempDir()
	h := &host{t: t, name: name, bin: portvolBinary(t), dir: dir, sock: filepath.Join(dir, "portvol.sock"),
		store: store, env: env, logPath: filepath.Join(dir, "serve.log")}
	h.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.sock)
	}}}
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			b, _ := os.ReadFile(h.logPath)
			t.Logf("log of %s:\n%s", h.name, b)
		}
		h.unmountAll()
	})
	h.start()
	return h
}

func (h *host) mountRoot() string { return filepath.Join(h.dir, "state", "mnt") }

// start runs portvol serve and waits until it answers.
func (h *host) start() {
	h.t.Helper()
	logf, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	h.cmd = exec.Command(h.bin, "serve", "--socket", h.sock, "--state-dir", filepath.Join(h.dir, "state"),
		"--host-id", h.name, "--store", h.store, "--lease-ttl", leaseTTL, "--mount-wait", mountWait, "--log-level", "info",
		// Directories: a host-run portvol leaves its btrfs pool mounted
		// when it stops (the next start finds it), which a test's
		// temporary directory cannot have.
		"--volume-fs", "directory")
	h.cmd.Env = append(os.Environ(), h.env...)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	logf.Close()
	h.exited = make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	eventually(h.t, h.name+" to serve", func() bool {
		_, _, err := h.call("VolumeDriver.Capabilities", map[string]any{})
		return err == nil
	})
	// Connecting (opening the store, proving its conditional writes)
	// happens after the plugin listens; the tests' calls expect a
	// connected host, so wait until a Get can tell that a name is unknown.
	eventually(h.t, h.name+" to connect to the store", func() bool {
		_, out, err := h.call("VolumeDriver.Get", map[string]any{"Name": "hosttest-not-a-volume"})
		msg, _ := out["Err"].(string)
		return err == nil && strings.Contains(msg, "does not exist")
	})
}

// kill is the host dying: SIGKILL, nothing cleaned up, mounts stay.
func (h *host) kill() {
	h.t.Helper()
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// stop is a clean shutdown (SIGTERM).
func (h *host) stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	select {
	case <-h.exited:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
		h.t.Errorf("%s ignored SIGTERM", h.name)
	}
}

func (h *host) unmountAll() {
	entries, _ := os.ReadDir(h.mountRoot())
	for _, e := range entries {
		for range 4 {
			if unix.Unmount(filepath.Join(h.mountRoot(), e.Name()), unix.MNT_DETACH) != nil {
				break
			}
		}
	}
}

// call POSTs a plugin protocol call and returns the status and the reply.
func (h *host) call(method string, body any) (int, map[string]any, error) {
	data, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/"+method, bytes.NewReader(data))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out := map[string]any{}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, err
}

// ok makes a call that must succeed, the way dockerd judges it.
func (h *host) ok(method string, body any) map[string]any {
	h.t.Helper()
	status, out, err := h.call(method, body)
	if err != nil || status != http.StatusOK || out["Err"] != nil {
		h.t.Fatalf("%s %s %v: status %d, %v, %v", h.name, method, body, status, out, err)
	}
	return out
}

// fail makes a call that must fail and returns the error dockerd would show.
func (h *host) fail(method string, body any) string {
	h.t.Helper()
	status, out, err := h.call(method, body)
	msg, _ := out["Err"].(string)
	if err != nil || status == http.StatusOK || msg == "" {
		h.t.Fatalf("%s %s %v: want an error, got status %d, %v, %v", h.name, method, body, status, out, err)
	}
	return msg
}

func (h *host) mount(vol, id string) string {
	h.t.Helper()
	return h.ok("VolumeDriver.Mount", map[string]string{"Name": vol, "ID": id})["Mountpoint"].(string)
}

// status is the Status map docker volume inspect would show.
func (h *host) status(vol string) map[string]any {
	h.t.Helper()
	return h.ok("VolumeDriver.Get", map[string]string{"Name": vol})["Volume"].(map[string]any)["Status"].(map[string]any)
}

// cli runs the portvol command line against this host's plugin.
func (h *host) cli(args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	cmd := exec.Command(h.bin, append(args, "--socket", h.sock)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// cliStatus is `portvol status VOLUME --json`.
func (h *host) cliStatus(vol string) map[string]any {
	h.t.Helper()
	out, errOut, code := h.cli("status", vol, "--json")
	var vols []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &vols) != nil || len(vols) != 1 {
		h.t.Fatalf("%s: portvol status %s: exit %d\n%s%s", h.name, vol, code, out, errOut)
	}
	return vols[0]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 30 s; the bound only keeps a broken test
// from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s: %q does not contain %q", what, s, sub)
		}
	}
}
