package s3_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
)

// stripProxy plays an S3 service that accepts conditional writes and
// ignores their conditions: it removes If-None-Match and If-Match from
// every request and signs it again for the server's address, so the
// server behind it sees a plain, validly signed PUT.
func stripProxy(t *testing.T, srv *s3test.Server) (endpoint string, stripped *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	stripped = new(atomic.Int64)
	p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		out := pr.Out
		if out.Header.Get("If-None-Match") != "" || out.Header.Get("If-Match") != "" {
			stripped.Add(1)
			out.Header.Del("If-None-Match")
			out.Header.Del("If-Match")
		}
		// Every request is signed again: the host changed too.
		out.Header.Del("Authorization")
		*out = *signer.SignV4(*out, srv.AccessKey, srv.SecretKey, "", srv.Region)
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: p}
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(l) })
	t.Cleanup(func() { hs.Close(); wg.Wait() })
	return "http://" + l.Addr().String(), stripped
}

// The probe passes against the real server and fails, naming the
// server's answer, against one that ignores conditional headers.
func TestS3ProbeConditional(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	opts := options(srv, srv.Prefix(t))
	if err := transfer.ProbeConditional(ctx, open(t, opts)); err != nil {
		t.Fatalf("probe of %s: %v", srv.Endpoint, err)
	}
	endpoint, stripped := stripProxy(t, srv)
	opts.Endpoint = endpoint
	err := transfer.ProbeConditional(ctx, open(t, opts))
	if stripped.Load() == 0 {
		t.Fatal("the proxy saw no conditional request")
	}
	want := "a create with If-None-Match: * of an object that exists must be refused with 412 Precondition Failed, but the store answered success"
	if !errors.Is(err, transfer.ErrConditionalIgnored) || !errors.Is(err, transfer.ErrPermanent) || !strings.Contains(err.Error(), want) {
		t.Fatalf("probe through a proxy that drops conditions: %v; want ErrConditionalIgnored saying %q", err, want)
	}
}
