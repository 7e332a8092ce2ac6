package main

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/portvol/portvol/internal/s3test"
)

// ignoringProxy is an S3 service that accepts conditional writes and
// ignores their conditions: it drops If-None-Match and If-Match and signs
// each request again for the real server behind it.
func ignoringProxy(t *testing.T, srv *s3test.Server) string {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Header.Del("If-None-Match")
		pr.Out.Header.Del("If-Match")
		pr.Out.Header.Del("Authorization")
		*pr.Out = *signer.SignV4(*pr.Out, srv.AccessKey, srv.SecretKey, "", srv.Region)
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: p}
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(l) })
	t.Cleanup(func() { hs.Close(); wg.Wait() })
	return "http://" + l.Addr().String()
}

// Every writer proves on connect that the store honours conditional
// writes: through a service that ignores them, init, import and the plugin
// refuse to run, naming the service's answer and the services known to
// work; the real server and a local directory pass.
func TestConditionalWritesProbed(t *testing.T) {
	ts, srv := s3Store(t)
	initStore(t, ts.url)
	initStore(t, "file://"+filepath.Join(t.TempDir(), "store"))
	ignoring := strings.Replace(ts.url, url.QueryEscape(srv.Endpoint), url.QueryEscape(ignoringProxy(t, srv)), 1)
	if ignoring == ts.url {
		t.Fatalf("cannot redirect %s through the proxy", ts.url)
	}
	want := []string{"cannot keep two hosts from holding one volume", "If-None-Match: * of an object that exists must be refused with 412 Precondition Failed, but the store answered success", "known to: AWS S3"}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	cli(t, "init", "--store", ignoring).fails(t, exitError, want...)
	cli(t, "import", "--store", ignoring, src, "v").fails(t, exitError, want...)
	if keys := storeKeys(t, ts.store, "volumes/"); len(keys) != 0 {
		t.Errorf("a refused import wrote %v", keys)
	}
	// Reading needs no conditional writes.
	cli(t, "snapshots", "--store", ignoring, "v").fails(t, exitError, `volume "v" does not exist`)

	// Nor does an import that finds the directory equal to the head: it
	// writes nothing (no lease, no probe), so it says unchanged. A
	// change through the same service is still refused.
	sc := filepath.Join(t.TempDir(), "import.statcache")
	time.Sleep(150 * time.Millisecond) // older than the stat cache's racy window
	cli(t, "import", "--store", ts.url, "--stat-cache", sc, src, "u").ok(t)
	before := storeState(t, ts.store)
	if out := cli(t, "import", "--store", ignoring, "--stat-cache", sc, src, "u").ok(t).stdout; !strings.Contains(out, "unchanged") {
		t.Errorf("unchanged import through the ignoring service printed %q, want unchanged", out)
	}
	if after := storeState(t, ts.store); !slices.Equal(before, after) {
		t.Errorf("an unchanged import through the ignoring service wrote to the store:\nbefore %q\nafter  %q", before, after)
	}
	if err := os.WriteFile(filepath.Join(src, "new"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "import", "--store", ignoring, "--stat-cache", sc, src, "u").fails(t, exitError, want...)

	dir := t.TempDir()
	sock := filepath.Join(dir, "pv.sock")
	s := startServe(t, "--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--store", ignoring)
	waitListening(t, sock, s)
	h := &identityHost{t: t, sock: sock}
	code, body := h.until("VolumeDriver.Create", "v", "412")
	for _, w := range want {
		if code == 200 || !strings.Contains(body, w) {
			t.Errorf("plugin Create through the ignoring service: %d %s; want it refused, saying %q", code, body, w)
		}
	}
}
