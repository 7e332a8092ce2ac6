package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portvol/portvol/lease"
)

// An S3 outage that outlasts an import's retries — here every request
// refused from the first pack upload on, so that the test does not wait
// out a minute of retries — leaves the lease held by this host's import
// (the release cannot reach the store either). The error says to run the
// import again, and that re-run, once the store answers, continues the
// lease at once (no TTL to wait, no plugin, no takeover) and publishes.
func TestS3ImportOutage(t *testing.T) {
	ts, srv := s3Store(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
			down.Store(true)
		}
		if down.Load() {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>outage (injected)</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	via := strings.Replace(ts.url, url.QueryEscape(srv.Endpoint), url.QueryEscape(front.URL), 1)
	if via == ts.url {
		t.Fatalf("cannot redirect %s through the proxy", ts.url)
	}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	lockDir := t.TempDir()

	r := cli(t, "import", "--store", via, "--lock-dir", lockDir, src, "pg")
	r.fails(t, exitError, "releasing the lease failed too", "run the same portvol import again on this host")
	o := head(t, ts.store, "pg")
	if o.Record.State != lease.Held || o.Record.Head != "" {
		t.Fatalf("after the outage the head record is %+v, want held (the release could not get through) without a head", o.Record)
	}

	down.Store(false)
	res := decode[importResult](t, cli(t, "import", "--json", "--store", ts.url, "--lock-dir", lockDir, src, "pg").ok(t))
	if res.Lease != "resumed" || res.Generation != o.Record.Generation {
		t.Errorf("re-run after the outage: lease %q at generation %d, want the stranded generation %d resumed", res.Lease, res.Generation, o.Record.Generation)
	}
	if o := head(t, ts.store, "pg"); o.Record.State != lease.Released || o.Record.Head != res.Snapshot {
		t.Errorf("after the re-run the head record is %+v, want released at snapshot %s", o.Record, res.Snapshot)
	}
	cli(t, "verify", "--store", ts.url, "pg").ok(t)
}
