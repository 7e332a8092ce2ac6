package main

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// An import interrupted after one pack and its index were stored leaves
// them for the next run to reuse; if that pack is deleted meanwhile (a
// clean-up by hand), the re-run notices, uploads its chunks again, and
// publishes a snapshot that verify passes and export restores.
func TestS3ImportRerunAfterPackVanished(t *testing.T) {
	ts, srv := s3Store(t)
	initStore(t, ts.url)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	indexed, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	packs := 0
	var indexOnce sync.Once
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
			mu.Lock()
			packs++
			first := packs == 1
			mu.Unlock()
			if !first {
				// Every later pack hangs until the import gives up.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
		}
		proxy.ServeHTTP(w, r)
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/index/") {
			indexOnce.Do(func() { close(indexed) })
		}
	}))
	defer front.Close()
	defer close(release)
	via := strings.Replace(ts.url, url.QueryEscape(srv.Endpoint), url.QueryEscape(front.URL), 1)

	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	big := make([]byte, 24<<20) // two packs
	_, _ = rand.Read(big)
	if err := os.WriteFile(filepath.Join(src, "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan cliResult, 1)
	go func() { done <- cliCtx(t, ctx, "import", "--store", via, src, "pg") }()
	select {
	case <-indexed:
	case r := <-done:
		t.Fatalf("import ended before storing a pack and its index: exit %d\n%s", r.code, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("import never stored a pack index")
	}
	cancel()
	select {
	case r := <-done:
		r.fails(t, exitInterrupted, "import interrupted")
	case <-time.After(40 * time.Second):
		t.Fatal("import did not stop after the interrupt")
	}
	left := storeKeys(t, ts.store, "packs/")
	if len(left) != 1 || len(storeKeys(t, ts.store, "index/")) != 1 {
		t.Fatalf("the interrupted import left packs %v and indexes %v; the test needs one of each", left, storeKeys(t, ts.store, "index/"))
	}
	if err := ts.store.Delete(context.Background(), left[0]); err != nil {
		t.Fatal(err)
	}

	res := decode[importResult](t, cli(t, "import", "--store", ts.url, src, "pg", "--json").ok(t))
	all := decode[verifyResult](t, cli(t, "verify", "--store", ts.url, "pg", "--all", "--json").ok(t))
	if !all.OK || len(all.Snapshots) != 1 {
		t.Fatalf("verify --all after the re-run: %+v", all)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	cli(t, "export", "--store", ts.url, "pg", dst).ok(t)
	sameTree(t, treeOf(t, src), treeOf(t, dst))
	if res.UploadedBytes < 24<<20 {
		t.Errorf("the re-run uploaded %d bytes; the deleted pack's chunks must go up again", res.UploadedBytes)
	}
}
