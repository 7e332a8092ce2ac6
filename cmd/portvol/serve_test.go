package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/metadata"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type server struct {
	cancel context.CancelFunc
	code   chan int
	out    *syncBuffer
}

func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cancel: cancel, code: make(chan int, 1), out: &syncBuffer{}}
	go func() { s.code <- run(ctx, append([]string{"serve"}, args...), s.out, s.out) }()
	t.Cleanup(func() { cancel() })
	return s
}

func waitListening(t *testing.T, sock string, s *server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case code := <-s.code:
			t.Fatalf("serve exited with %d before listening:\n%s", code, s.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not listen on %s:\n%s", sock, s.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func post(t *testing.T, sock, method, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Post("http://plugin/"+method, "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "pv.sock")
	state := filepath.Join(dir, "state")
	s := startServe(t, "--socket", sock, "--state-dir", state, "--log-format", "json")
	waitListening(t, sock, s)
	if code, body := post(t, sock, "VolumeDriver.Capabilities", "{}"); code != 200 || !strings.Contains(body, `"global"`) {
		t.Fatalf("Capabilities: %d %s", code, body)
	}
	if code, body := post(t, sock, "VolumeDriver.Create", `{"Name":"v1"}`); code != 200 {
		t.Fatalf("Create: %d %s", code, body)
	}

	// A second server on the same socket, or on the same state directory,
	// refuses clearly instead of hanging or stealing.
	var out bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--socket", sock, "--state-dir", filepath.Join(dir, "other")}, &out, &out); code != exitError || !strings.Contains(out.String(), "another process is serving") {
		t.Errorf("second serve on the same socket: exit %d, %s", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"serve", "--socket", filepath.Join(dir, "b.sock"), "--state-dir", state}, &out, &out); code != exitError || !strings.Contains(out.String(), "another portvol (pid") {
		t.Errorf("second serve on the same state dir: exit %d, %s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "b.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused server left its socket: %v", err)
	}

	s.cancel() // SIGTERM
	select {
	case code := <-s.code:
		if code != exitOK {
			t.Fatalf("serve exit code %d:\n%s", code, s.out)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after shutdown: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(s.out.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("--log-format json wrote a non-JSON line: %q", line)
		}
	}

	// The database was closed, the volume and the generated host id kept.
	db, err := metadata.Open(filepath.Join(state, "portvol.db"), metadata.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("database still locked after shutdown: %v", err)
	}
	defer db.Close()
	if _, err := db.Volume(context.Background(), "v1"); err != nil {
		t.Errorf("volume lost: %v", err)
	}
	id, err := db.HostID(context.Background())
	if err != nil || !hostIDRE.MatchString(id) {
		t.Errorf("generated host id %q, %v", id, err)
	}
}

func TestServeFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "env.sock")
	t.Setenv("PORTVOL_SOCKET", sock)
	t.Setenv("PORTVOL_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("PORTVOL_HOST_ID", "node-7")
	t.Setenv("PORTVOL_MOUNT_ROOT", filepath.Join(dir, "mnt"))
	s := startServe(t)
	waitListening(t, sock, s)
	post(t, sock, "VolumeDriver.List", "{}") // served: start-up is complete
	s.cancel()
	if code := <-s.code; code != exitOK {
		t.Fatalf("exit %d:\n%s", code, s.out)
	}
	db, err := metadata.Open(filepath.Join(dir, "state", "portvol.db"), metadata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if id, _ := db.HostID(context.Background()); id != "node-7" {
		t.Errorf("host id from PORTVOL_HOST_ID = %q", id)
	}
	if _, err := os.Stat(filepath.Join(dir, "mnt")); err != nil {
		t.Errorf("PORTVOL_MOUNT_ROOT not used: %v", err)
	}
}

func TestServeRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	base := []string{"serve", "--socket", filepath.Join(dir, "s.sock"), "--state-dir", filepath.Join(dir, "state")}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "ftp://x/y"}, `unknown scheme "ftp"`},
		{[]string{"--store", "file://relative/path"}, "absolute path with three slashes"},
		{[]string{"--store", "file:relative"}, "absolute path with three slashes"},
		{[]string{"--store", "s3://"}, "no bucket"},
		{[]string{"--store", "/just/a/path"}, "needs the file scheme"},
		{[]string{"--state-dir", "relative"}, "--state-dir"},
		{[]string{"--mount-root", "mnt"}, "--mount-root"},
		{[]string{"--socket", "portvol.sock"}, "--socket"},
		{[]string{"--host-id", "bad/id"}, "--host-id"},
		{[]string{"--host-id", strings.Repeat("h", 65)}, "--host-id"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--log-level", "loud"}, "--log-level"},
	} {
		var out bytes.Buffer
		code := run(context.Background(), append(append([]string{}, base...), c.args...), &out, &out)
		if code != exitUsage || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", c.args, code, out.String(), exitUsage, c.want)
		}
	}
	// Credentials in an S3 URL never reach the error text.
	var out bytes.Buffer
	run(context.Background(), append(base, "--store", "s4://KEY:SECRET@bucket"), &out, &out)
	if strings.Contains(out.String(), "SECRET") {
		t.Errorf("store URL credentials in error: %s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused configuration created the state dir: %v", err)
	}
}

func TestNewHostID(t *testing.T) {
	a, err := newHostID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newHostID()
	if a == b || !hostIDRE.MatchString(a) {
		t.Errorf("host ids %q, %q", a, b)
	}
}
