package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

// requireRoot skips tests that bind-mount unless they run as root; in CI
// (CI=true) a missing prerequisite is a failure, not a skip.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test bind-mounts and needs root; CI must run it as root")
	}
	t.Skip("needs root to bind-mount")
}

// env is a driver served over HTTP on a unix socket in a temp dir, the way
// dockerd reaches it, with a local-directory store (shared by the hosts of
// a test that makes several).
type env struct {
	t        *testing.T
	host     string
	stateDir string
	root     string
	dbPath   string
	db       *metadata.DB
	d        *Driver
	srv      *http.Server
	sock     string
	client   *http.Client

	storeDir string
	ttl      time.Duration
	// wrap, if set, decorates the store (fault injection).
	wrap func(transfer.ObjectStore) transfer.ObjectStore
	// tune, if set, adjusts the driver before it starts.
	tune func(*Driver)
	// noWait: start does not wait for the store to be reachable.
	noWait bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := newHost(t, "test-host", filepath.Join(t.TempDir(), "store"))
	e.start(nil)
	return e
}

// newHost returns an unstarted env for host on the store in storeDir;
// set its fields, then call start.
func newHost(t *testing.T, host, storeDir string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, host: host, stateDir: filepath.Join(dir, "state"), root: filepath.Join(dir, "mnt"), sock: filepath.Join(dir, "p.sock")}
	e.dbPath = filepath.Join(dir, "portvol.db")
	e.storeDir = storeDir
	t.Cleanup(func() {
		e.stop()
		// Leave no bind mount behind for TempDir's RemoveAll.
		entries, _ := os.ReadDir(e.root)
		for _, en := range entries {
			for range 4 {
				if sysMounter.Unmount(sysMounter{}, filepath.Join(e.root, en.Name())) != nil {
					break
				}
			}
		}
	})
	return e
}

// start opens the database, builds the driver (with mounter m, or the real
// one), reconciles and serves.
func (e *env) start(m mounter) {
	t := e.t
	t.Helper()
	db, err := metadata.Open(e.dbPath, metadata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{StateDir: e.stateDir, MountRoot: e.root, HostID: e.host, DB: db, Connect: e.connect, MountWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.retryBase = 50 * time.Millisecond
	if m != nil {
		d.mnt = m
	}
	if e.tune != nil {
		e.tune(d)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Connect()
	if !e.noWait {
		eventually(t, "the driver to reach its store", func() bool { return d.backend.Load() != nil })
	}
	_ = os.Remove(e.sock)
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	e.db, e.d = db, d
	e.srv = &http.Server{Handler: NewHandler(d, nil)}
	go e.srv.Serve(l)
	e.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
		},
	}}
}

// connect opens the env's store the way cmd/portvol does.
func (e *env) connect(ctx context.Context) (*Backend, error) {
	var st transfer.ObjectStore
	st, err := localdir.New(e.storeDir)
	if err != nil {
		return nil, err
	}
	if e.wrap != nil {
		st = e.wrap(st)
	}
	if err := snapshot.Init(ctx, st, snapshot.InitOptions{}); err != nil {
		return nil, err
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{Fossils: prune.Fossils(st)})
	if err != nil {
		return nil, err
	}
	ttl := e.ttl
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	leases, err := lease.New(st, lease.Options{Host: e.host, TTL: ttl, PollInterval: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return &Backend{Store: st, Snapshots: repo, Leases: leases}, nil
}

// stop is a plugin process ending: no unmounting, state stays on disk.
func (e *env) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.d.Close()
	e.db.Close()
	e.srv = nil
}

// call POSTs body to /<method> and decodes the JSON reply.
func (e *env) call(ctx context.Context, method string, body any) (int, map[string]any, error) {
	var buf bytes.Buffer
	if s, ok := body.(string); ok {
		buf.WriteString(s)
	} else if err := json.NewEncoder(&buf).Encode(body); err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/"+method, &buf)
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, out, nil
}

// ok calls and fails the test unless the call succeeded.
func (e *env) ok(method string, body any) map[string]any {
	e.t.Helper()
	status, out, err := e.call(context.Background(), method, body)
	if err != nil {
		e.t.Fatalf("%s: %v", method, err)
	}
	if status != http.StatusOK || out["Err"] != nil {
		e.t.Fatalf("%s %v: status %d, %v", method, body, status, out)
	}
	return out
}

// fail calls and returns the error text, failing the test if the call
// succeeded or the error was not reported the way dockerd reads it.
func (e *env) fail(method string, body any) string {
	e.t.Helper()
	status, out, err := e.call(context.Background(), method, body)
	if err != nil {
		e.t.Fatalf("%s: %v", method, err)
	}
	msg, _ := out["Err"].(string)
	if status == http.StatusOK || msg == "" {
		e.t.Fatalf("%s %v: want an error, got status %d, %v", method, body, status, out)
	}
	return msg
}

// status returns Get's Status map of a volume.
func (e *env) status(name string) map[string]any {
	e.t.Helper()
	out := e.ok("VolumeDriver.Get", map[string]string{"Name": name})
	return out["Volume"].(map[string]any)["Status"].(map[string]any)
}

func (e *env) mounts(name string) int {
	e.t.Helper()
	return int(e.status(name)["mounts"].(float64))
}

// gateMounter wraps the real mounter; Bind waits on the gate, to make a
// Mount slow, or fails with bindErr.
type gateMounter struct {
	sysMounter
	entered chan string   // receives the target when Bind is entered
	gate    chan struct{} // Bind proceeds once this is closed
	bindErr error
}

func (g *gateMounter) Bind(src, dst string) error {
	if g.entered != nil {
		g.entered <- dst
	}
	if g.gate != nil {
		<-g.gate
	}
	if g.bindErr != nil {
		return g.bindErr
	}
	return g.sysMounter.Bind(src, dst)
}

// eventually polls cond for up to 10 s; the bound only keeps a broken test
// from hanging, it asserts nothing about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	m, err := sysMounter{}.Mounted(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
