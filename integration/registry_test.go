package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// registry is the CNCF distribution registry (make tools builds it into
// .tools/bin/registry) serving one store over plain HTTP on one port of
// several addresses: one process per address, all over the same storage
// directory, so that what the machine's engine pushes to 127.0.0.1 host B
// pulls from the machine's side of the veth pair. The machine's engine
// treats 127.0.0.0/8 as insecure by default; host B's dockerd is started
// with --insecure-registry for vethRange.
type registry struct {
	port string
}

// startRegistry starts the registry on each of ips; it stops when t ends.
func startRegistry(t *testing.T, ips ...string) *registry {
	t.Helper()
	bin := registryBinary(t)
	dir := t.TempDir()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	r := &registry{port: freePortOn(t, ips)}
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, r.port)
		// One upload secret for all processes: they serve one store.
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: %s\n",
			filepath.Join(dir, "storage"), addr, hex.EncodeToString(secret))
		cfgPath := filepath.Join(dir, ip+".yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, ip+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		// It would send traces to an OTLP collector on localhost:4318.
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start the registry: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("registry on %s (log tail):\n%s", addr, tail(string(b), 3000))
			}
		})
		if err := waitRegistry(addr, exited); err != nil {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("registry on %s: %v\n%s", addr, err, tail(string(b), 3000))
		}
	}
	return r
}

// addr is where the registry listens on ip, as a reference's host part.
func (r *registry) addr(ip string) string { return net.JoinHostPort(ip, r.port) }

// waitRegistry waits until the registry at addr answers its API root.
func waitRegistry(addr string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		select {
		case <-exited:
			return fmt.Errorf("the registry exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer for 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePortOn finds a TCP port that is free on every one of ips.
func freePortOn(t *testing.T, ips []string) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ls := []net.Listener{l}
		ok := true
		for _, ip := range ips[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l2)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return ""
}

// registryBinary finds the registry through PORTVOL_REGISTRY (the Makefile
// exports it), then .tools/bin/registry. Without it the test skips,
// except under CI=true or PORTVOL_REQUIRE_S3=1 (make test), where it fails.
func registryBinary(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{os.Getenv("PORTVOL_REGISTRY"), filepath.Join(repoRoot, ".tools", "bin", "registry")} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
		tried = append(tried, p)
	}
	msg := "needs the distribution registry; tried " + strings.Join(tried, ", ") + ": run `make tools` or set PORTVOL_REGISTRY"
	if os.Getenv("CI") == "true" || os.Getenv("PORTVOL_REQUIRE_S3") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// push runs make push for the plugin stamped with version to repo
// ("host:port/name") and returns the reference it reports.
func push(t *testing.T, repo, version string) string {
	t.Helper()
	out, err := run(t.Context(), "", "make", "-C", repoRoot, "push", "REGISTRY="+repo, "VERSION="+version)
	if err != nil {
		t.Fatalf("make push REGISTRY=%s VERSION=%s: %v\n%s", repo, version, err, tail(out, 4000))
	}
	for _, l := range strings.Split(out, "\n") {
		if ref, ok := strings.CutPrefix(l, "pushed "); ok {
			return strings.Fields(ref)[0]
		}
	}
	t.Fatalf("make push reported no pushed reference:\n%s", tail(out, 4000))
	return ""
}

// installByName is docker plugin install of ref on the host, as e2ePlugin,
// with the cluster's settings on the install line; it returns docker's
// output. Whether or not enabling worked, the plugin is installed.
func (h *host) installByName(ref string, extra ...string) (string, error) {
	args := append([]string{"plugin", "install", "--grant-all-permissions", "--alias", e2ePlugin, ref}, h.settings()...)
	out, err := h.eng.cli(append(args, extra...)...)
	if id, ierr := h.eng.cli("plugin", "inspect", "-f", "{{.Id}}", e2ePlugin); ierr == nil {
		h.pluginID = strings.TrimSpace(id)
	}
	return out, err
}

// pluginBinaryVersion is the first line of portvol version run from the
// host's installed plugin's root filesystem: the binary that serves.
func (h *host) pluginBinaryVersion(t *testing.T) string {
	t.Helper()
	root := h.docker(t, "info", "-f", "{{.DockerRootDir}}")
	bin := filepath.Join(root, "plugins", h.pluginID, "rootfs", "portvol")
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s version: %v\n%s", h.name, bin, err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

// loggedVersions are the versions the host's plugin logged at each start,
// in order (dockerd's log holds the JSON lines escaped: version\":\"V\").
func (h *host) loggedVersions() []string {
	var vs []string
	for _, l := range strings.Split(h.pluginLog(), "\n") {
		if !strings.Contains(l, "portvol starting") {
			continue
		}
		l = strings.ReplaceAll(l, `\"`, `"`)
		if _, rest, ok := strings.Cut(l, `"version":"`); ok {
			if v, _, ok := strings.Cut(rest, `"`); ok {
				vs = append(vs, v)
			}
		}
	}
	return vs
}

// generation is a volume's lease generation in its status on the host.
func (h *host) generation(t *testing.T, vol string) int {
	t.Helper()
	g, _ := h.status(t, vol)["generation"].(float64)
	return int(g)
}

// runOnce runs sh -c script in a throwaway container of the cluster's
// image on the host, with vol at /data, and returns its output.
func (h *host) runOnce(t *testing.T, vol, script string) string {
	t.Helper()
	return h.docker(t, "run", "--rm", "--label", e2eLabel, "--network", "none", "-v", vol+":/data", h.c.image, "sh", "-c", script)
}
