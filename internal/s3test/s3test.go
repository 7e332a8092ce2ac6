package s3test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is an S3 server for one test.
type Server struct {
	Endpoint  string // "http://127.0.0.1:PORT"
	Region    string
	Bucket    string // exists
	AccessKey string
	SecretKey string
	// External is true for a PORTVOL_TEST_S3_* server, which Kill and
	// Restart cannot control.
	External bool
	// CAFile is the PEM file of the CA that signed a TLS server's
	// certificate (StartTLS); empty for plain HTTP.
	CAFile string

	bin, dataDir, addr string
	certFile, keyFile  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	output *bytes.Buffer
}

// Start returns a running S3 server for t and stops it when t ends. The
// bucket Server.Bucket exists and is empty (a fresh local server) or
// shared (an external one: use Prefix).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start for a local server that speaks HTTPS with a
// certificate for 127.0.0.1 from a throwaway CA (Server.CAFile). It skips
// the test when PORTVOL_TEST_S3_* points at an external server.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

// StartOn starts a local versitygw for t (never an external server) that
// listens on ip, for clients in other network namespaces, and keeps its
// data in a new directory under parent (t.TempDir() when "").
func StartOn(t testing.TB, ip, parent string) *Server {
	t.Helper()
	dataDir := t.TempDir()
	if parent != "" {
		var err error
		if dataDir, err = os.MkdirTemp(parent, "portvol-s3-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dataDir) })
	}
	return startLocal(t, false, ip, dataDir)
}

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	if s := external(t); s != nil {
		if useTLS {
			t.Skip("needs the local versitygw with a test CA (unset PORTVOL_TEST_S3_*)")
		}
		return s
	}
	return startLocal(t, useTLS, "127.0.0.1", t.TempDir())
}

func startLocal(t testing.TB, useTLS bool, ip, dataDir string) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{
		Region:    "us-east-1",
		Bucket:    "portvol-test",
		AccessKey: "portvol-test-" + randomHex(4),
		SecretKey: randomHex(20),
		bin:       bin,
		dataDir:   dataDir,
	}
	// versitygw's posix backend treats each directory under its root as
	// a bucket.
	if err := os.Mkdir(filepath.Join(s.dataDir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if useTLS {
		s.CAFile, s.certFile, s.keyFile = writeTLSFiles(t, t.TempDir())
		scheme = "https://"
	}
	var err error
	for range 3 { // a free port can be taken between finding and binding it
		s.addr = freeAddr(t, ip)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	s.Endpoint = scheme + s.addr
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", s.Output())
		}
	})
	return s
}

func external(t testing.TB) *Server {
	env := map[string]string{}
	var missing []string
	for _, k := range []string{"ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "BUCKET"} {
		env[k] = os.Getenv("PORTVOL_TEST_S3_" + k)
		if env[k] == "" {
			missing = append(missing, "PORTVOL_TEST_S3_"+k)
		}
	}
	if len(missing) == 4 {
		return nil
	}
	if len(missing) > 0 {
		t.Fatalf("external S3 test server: also set %s", strings.Join(missing, ", "))
	}
	return &Server{
		Endpoint: env["ENDPOINT"], AccessKey: env["ACCESS_KEY"], SecretKey: env["SECRET_KEY"], Bucket: env["BUCKET"],
		Region: cmpOr(os.Getenv("PORTVOL_TEST_S3_REGION"), "us-east-1"), External: true,
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Prefix returns a key prefix ("test-NAME-RANDOM/") of t's own, so tests
// sharing one bucket do not see each other's objects.
func (s *Server) Prefix(t testing.TB) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "-")
	if len(name) > 60 {
		name = name[:60]
	}
	return "test-" + strings.Trim(name, "-.") + "-" + randomHex(4) + "/"
}

// URL returns the store URL of prefix on this server, without
// credentials (see Env).
func (s *Server) URL(prefix string) string {
	q := url.Values{"endpoint": {s.Endpoint}, "region": {s.Region}}
	if s.CAFile != "" {
		q.Set("ca_file", s.CAFile)
	}
	return "s3://" + s.Bucket + "/" + prefix + "?" + q.Encode()
}

// Env returns the environment a process needs for the server's
// credentials.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// DataDir is the directory the local server stores buckets in.
func (s *Server) DataDir() string { return s.dataDir }

// Addr is the "IP:PORT" a local server listens on.
func (s *Server) Addr() string { return s.addr }

// Output is what the server process printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.output == nil {
		return ""
	}
	return s.output.String()
}

// RequireLocal skips t when the server is external: for tests that kill or
// restart it, or use its root credentials.
func (s *Server) RequireLocal(t testing.TB) {
	t.Helper()
	if s.External {
		t.Skip("needs the local versitygw (unset PORTVOL_TEST_S3_*): kills, restarts or administers the server")
	}
}

// Kill kills the server process at once (SIGKILL), as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if s.External {
		t.Skip("needs the local versitygw (unset PORTVOL_TEST_S3_*): cannot kill an external server")
	}
	s.stop()
}

// Restart starts the server again on the same address and data directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.External {
		t.Skip("needs the local versitygw (unset PORTVOL_TEST_S3_*): cannot restart an external server")
	}
	s.stop()
	var err error
	for range 20 { // the old socket may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restarting versitygw on %s: %v", s.addr, err)
}

func (s *Server) start() error {
	args := []string{"--port", s.addr, "--region", "us-east-1", "--keep-alive", "--quiet"}
	if s.certFile != "" {
		args = append(args, "--cert", s.certFile, "--key", s.keyFile)
	}
	cmd := exec.Command(s.bin, append(args, "posix", s.dataDir)...)
	// Credentials through the environment keep them out of ps.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	out := &lockedBuffer{mu: &s.mu, b: s.outputBuffer()}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := waitReady(s.addr, s.CAFile, exited); err != nil {
		s.stop()
		return fmt.Errorf("%w; output:\n%s", err, s.Output())
	}
	return nil
}

func (s *Server) outputBuffer() *bytes.Buffer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.output == nil {
		s.output = new(bytes.Buffer)
	}
	return s.output
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// waitReady waits until the server answers HTTP.
func waitReady(addr, caFile string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	scheme := "http://"
	if caFile != "" {
		client.Transport = &http.Transport{TLSClientConfig: tlsClientConfig(caFile)}
		scheme = "https://"
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("versitygw exited during start")
		default:
		}
		resp, err := client.Get(scheme + addr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("versitygw did not answer on %s within 20s", addr)
}

func freeAddr(t testing.TB, ip string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Binary returns the versitygw binary: $PORTVOL_VERSITYGW, .tools/bin
// under the module root, or versitygw in PATH. Without one it skips t, or
// fails it under CI=true or PORTVOL_REQUIRE_S3=1.
func Binary(t testing.TB) string {
	t.Helper()
	var tried []string
	if p := os.Getenv("PORTVOL_VERSITYGW"); p != "" {
		if isExecutable(p) {
			return p
		}
		tried = append(tried, "PORTVOL_VERSITYGW="+p)
	}
	if root := moduleRoot(); root != "" {
		p := filepath.Join(root, ".tools", "bin", "versitygw")
		if isExecutable(p) {
			return p
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	tried = append(tried, "versitygw in PATH")
	msg := fmt.Sprintf("S3 tests need versitygw; tried %s: run `make tools` or set PORTVOL_VERSITYGW", strings.Join(tried, ", "))
	if os.Getenv("CI") == "true" || os.Getenv("PORTVOL_REQUIRE_S3") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// moduleRoot is the nearest directory above the working directory (a
// package directory under go test) that holds go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough to diagnose
	}
	return l.b.Write(p)
}
