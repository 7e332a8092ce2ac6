package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
)

// An import interrupted while it uploads (SIGINT cancels the command's
// context) publishes nothing and gives the lease back. The S3 server sits
// behind a proxy that holds pack uploads until the client gives up: the
// fault injection that makes "while it uploads" certain.
func TestS3ImportInterrupted(t *testing.T) {
	ts, srv := s3Store(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	uploading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
			once.Do(func() { close(uploading) })
			// Take the body and hold the answer until the client goes
			// away (the server notices only once the body is read).
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	defer close(release) // runs before Close
	via := strings.Replace(ts.url, url.QueryEscape(srv.Endpoint), url.QueryEscape(front.URL), 1)
	if via == ts.url {
		t.Fatalf("cannot redirect %s through the proxy", ts.url)
	}

	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan cliResult, 1)
	go func() { done <- cliCtx(t, ctx, "import", "--store", via, src, "pg") }()
	select {
	case <-uploading:
	case r := <-done:
		t.Fatalf("import ended before uploading a pack: exit %d\n%s", r.code, r.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("import never uploaded a pack")
	}
	cancel() // what SIGINT does
	var r cliResult
	select {
	case r = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("import did not stop after the interrupt")
	}
	r.fails(t, exitInterrupted, `volume "pg": import interrupted: nothing was published and the lease is released`)

	o := head(t, ts.store, "pg")
	if o.Record.State != lease.Released || o.Record.Head != "" {
		t.Errorf("after the interrupt the head record is %+v, want released without a head", o.Record)
	}
	if keys := storeKeys(t, ts.store, "snapshots/"); len(keys) != 0 {
		t.Errorf("an interrupted import left manifests: %v", keys)
	}
	// The next import succeeds at once: nobody holds the volume.
	cli(t, "import", "--store", ts.url, src, "pg").ok(t)
}
