package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
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
)

// s3Server is a versitygw process with the posix backend, started for one
// test. Its data directory is on the machine's disk (not tmpfs), so the
// store behaves like a real one; its root credentials are random and reach
// the plugins only through credentials files.
type s3Server struct {
	Addr      string // "IP:PORT" it listens on
	Region    string
	Bucket    string // exists
	AccessKey string
	SecretKey string
	dataDir   string

	mu     sync.Mutex
	output bytes.Buffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// findVersitygw returns the versitygw binary: $PORTVOL_VERSITYGW (the
// Makefile exports it), else .tools/bin/versitygw under the repository
// root. Without one the test skips, and fails under CI=true or make.
func findVersitygw(t testing.TB) string {
	t.Helper()
	var tried []string
	if p := os.Getenv("PORTVOL_VERSITYGW"); p != "" {
		if isExecutable(p) {
			return p
		}
		tried = append(tried, "PORTVOL_VERSITYGW="+p)
	}
	p := filepath.Join(repoRoot, ".tools", "bin", "versitygw")
	if isExecutable(p) {
		return p
	}
	tried = append(tried, p)
	msg := fmt.Sprintf("two-host tests need the versitygw S3 server; tried %s: run `make tools` or set PORTVOL_VERSITYGW", strings.Join(tried, ", "))
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

// startS3Server starts versitygw listening on ip (a random free port) and
// stops it when t ends.
func startS3Server(t testing.TB, ip string) *s3Server {
	t.Helper()
	bin := findVersitygw(t)
	dataDir, err := os.MkdirTemp(diskTempDir, "portvol-e2e-s3-")
	if err != nil {
		t.Fatal(err)
	}
	s := &s3Server{
		Region:    "us-east-1",
		Bucket:    "portvol-e2e",
		AccessKey: "e2e-" + randomHex(4),
		SecretKey: randomHex(20),
		dataDir:   dataDir,
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("versitygw output (tail):\n%s", tail(s.Output(), 3000))
		}
		os.RemoveAll(dataDir)
	})
	// The posix backend serves each directory under its root as a bucket.
	if err := os.Mkdir(filepath.Join(dataDir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 3 { // a free port can be taken between finding and binding it
		s.Addr, err = freeAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		if err = s.start(bin); err == nil {
			return s
		}
	}
	t.Fatalf("starting versitygw: %v", err)
	return nil
}

func (s *s3Server) start(bin string) error {
	cmd := exec.Command(bin, "--port", s.Addr, "--region", s.Region, "--keep-alive", "--quiet", "posix", s.dataDir)
	// Credentials through the environment keep them out of ps.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &s.mu, b: &s.output}, &lockedWriter{mu: &s.mu, b: &s.output}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited during start:\n%s", s.Output())
		default:
		}
		if resp, err := client.Get("http://" + s.Addr + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return errors.New("versitygw did not answer within 20 s")
}

func (s *s3Server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// Output is what versitygw printed so far.
func (s *s3Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.output.String()
}

// credentialsFile is the content of an AWS shared credentials file for
// the server's root user.
func (s *s3Server) credentialsFile() string {
	return fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.AccessKey, s.SecretKey)
}

// storeURL is the PORTVOL_STORE value for prefix, reached at endpoint
// ("IP:PORT": the server itself or a relay in front of it).
func (s *s3Server) storeURL(prefix, endpoint string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=http://%s&region=%s", s.Bucket, prefix, endpoint, s.Region)
}

// objects counts the objects under prefix and their bytes, straight from
// the posix backend's directory: what the store holds, whoever wrote it.
func (s *s3Server) objects(prefix string) (n int, bytes int64) {
	root := filepath.Join(s.dataDir, s.Bucket, prefix)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n++
			bytes += fi.Size()
		}
		return nil
	})
	return n, bytes
}

func freeAddr(ip string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < 1<<20 { // enough to diagnose
		w.b.Write(p)
	}
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func randomName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
