package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/retry"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(b)
	return b
}

// slowReader is a seekable source that yields at most rate bytes/s, so an
// upload is still running when the test breaks the server.
type slowReader struct {
	*bytes.Reader
	rate  int
	read  atomic.Int64
	start time.Time
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.start.IsZero() {
		s.start = time.Now()
	}
	p = p[:min(len(p), 256<<10)]
	n, err := s.Reader.Read(p)
	total := s.read.Add(int64(n))
	due := s.start.Add(time.Duration(float64(total) / float64(s.rate) * float64(time.Second)))
	time.Sleep(time.Until(due))
	return n, err
}

func (s *slowReader) Seek(off int64, whence int) (int64, error) {
	s.start = time.Time{}
	s.read.Store(0)
	return s.Reader.Seek(off, whence)
}

func checkContent(t *testing.T, st transfer.ObjectStore, key string, want []byte) {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	sum := sha256.Sum256(want)
	if err != nil || n != int64(len(want)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("Get(%q): %d bytes (%v), want the %d bytes uploaded", key, n, err, len(want))
	}
}

// TestS3ServerKilledMidUpload: the server dies during a 256 MiB upload.
// The retries give up with an error that says so; no partial object is
// ever visible; once the server is back the next attempt succeeds.
func TestS3ServerKilledMidUpload(t *testing.T) {
	srv := s3test.Start(t)
	srv.RequireLocal(t)
	var retries atomic.Int32
	st := retry.New(open(t, options(srv, "kill/")), retry.Options{
		InitialDelay: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond, MaxElapsed: 3 * time.Second,
		OnRetry: func(string, string, int, error, time.Duration) { retries.Add(1) },
	})
	data := randomBytes(256 << 20)
	src := &slowReader{Reader: bytes.NewReader(data), rate: 64 << 20}
	done := make(chan error, 1)
	go func() { done <- st.Put(context.Background(), "pack", src, int64(len(data))) }()
	for src.read.Load() < 32<<20 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Kill(t)
	err := <-done
	if err == nil {
		t.Fatal("Put succeeded although the server was killed mid-upload")
	}
	if !strings.Contains(err.Error(), "gave up after") || retries.Load() < 2 {
		t.Fatalf("Put after the kill: %v after %d retries; want retries, then an error saying it gave up", err, retries.Load())
	}
	t.Logf("error after %d retries: %v", retries.Load(), err)

	srv.Restart(t)
	ctx := context.Background()
	if _, err := st.Stat(ctx, "pack"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("after the failed upload Stat = %v, want ErrNotExist: a partial object is visible", err)
	}
	var listed []string
	if err := st.List(ctx, "", func(oi transfer.ObjectInfo) error { listed = append(listed, oi.Key); return nil }); err != nil || len(listed) != 0 {
		t.Fatalf("after the failed upload List = %q, %v; want nothing", listed, err)
	}
	if err := st.Put(ctx, "pack", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put after the server came back: %v", err)
	}
	checkContent(t, st, "pack", data)
}

// TestS3ServerBackDuringRetries: the server is down when a Put starts and
// comes back while the retry decorator is backing off.
func TestS3ServerBackDuringRetries(t *testing.T) {
	srv := s3test.Start(t)
	var retries atomic.Int32
	st := retry.New(open(t, options(srv, "back/")), retry.Options{
		InitialDelay: 50 * time.Millisecond, MaxDelay: 300 * time.Millisecond, MaxElapsed: time.Minute,
		OnRetry: func(string, string, int, error, time.Duration) { retries.Add(1) },
	})
	srv.Kill(t)
	data := randomBytes(8 << 20)
	done := make(chan error, 1)
	go func() { done <- st.Put(context.Background(), "pack", bytes.NewReader(data), int64(len(data))) }()
	for retries.Load() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart(t)
	if err := <-done; err != nil {
		t.Fatalf("Put while the server restarted: %v", err)
	}
	checkContent(t, st, "pack", data)
}

// slowDownProxy forwards to the server but answers the next n requests
// with 503 SlowDown, as S3 does under load.
type slowDownProxy struct {
	fail  atomic.Int32
	seen  atomic.Int32
	proxy *httputil.ReverseProxy
}

func (p *slowDownProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.seen.Add(1)
	if p.fail.Add(-1) >= 0 {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>test</RequestId></Error>`)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

func startSlowDownProxy(t *testing.T, target string) (*slowDownProxy, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &slowDownProxy{proxy: httputil.NewSingleHostReverseProxy(u)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: p}
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(l) })
	t.Cleanup(func() { hs.Close(); wg.Wait() })
	return p, "http://" + l.Addr().String()
}

func TestS3SlowDownBacksOff(t *testing.T) {
	srv := s3test.Start(t)
	proxy, endpoint := startSlowDownProxy(t, srv.Endpoint)
	opts := options(srv, "slow/")
	opts.Endpoint = endpoint
	var waits []time.Duration
	var mu sync.Mutex
	st := retry.New(open(t, opts), retry.Options{
		InitialDelay: 20 * time.Millisecond, MaxElapsed: 30 * time.Second,
		OnRetry: func(op, _ string, _ int, err error, wait time.Duration) {
			// HEAD responses have no body: Stat sees only the 503.
			if !strings.Contains(err.Error(), "SlowDown") && !strings.Contains(err.Error(), "HTTP 503") {
				t.Errorf("%s retried error %v, want the SlowDown", op, err)
			}
			mu.Lock()
			waits = append(waits, wait)
			mu.Unlock()
		},
	})
	ctx := context.Background()
	data := randomBytes(4 << 20)
	proxy.fail.Store(4)
	start := proxy.seen.Load()
	if err := st.Put(ctx, "pack", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put through 4 SlowDown answers: %v", err)
	}
	if got := proxy.seen.Load() - start; got != 5 || len(waits) != 4 {
		t.Fatalf("%d requests and %d backoffs for one Put behind 4 SlowDowns; want 5 and 4", got, len(waits))
	}
	proxy.fail.Store(3)
	if _, err := st.Stat(ctx, "pack"); err != nil {
		t.Fatalf("Stat through 3 SlowDown answers: %v", err)
	}
	checkContent(t, st, "pack", data)

	// Without the decorator the SlowDown reaches the caller as a
	// transient error.
	bare := open(t, opts)
	proxy.fail.Store(1)
	_, err := bare.Stat(ctx, "pack")
	if err == nil || !transfer.Retryable(err) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("bare Stat behind a SlowDown: %v, want a retryable SlowDown error", err)
	}
}
