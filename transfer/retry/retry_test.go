package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/retry"
	"github.com/portvol/portvol/transfer/transfertest"
)

var fast = retry.Options{InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxElapsed: 2 * time.Second}

func TestConformance(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore { return retry.New(memstore.New(), fast) })
}

var errTransient = errors.New("connection reset by peer")

// flaky fails the first failures calls of each operation with err, after
// consuming readBefore bytes of a Put source.
type flaky struct {
	transfer.ObjectStore
	mu         sync.Mutex
	failures   int
	err        error
	readBefore int
	calls      map[string]int
}

func newFlaky(failures int, err error) *flaky {
	return &flaky{ObjectStore: memstore.New(), failures: failures, err: err, calls: map[string]int{}}
}

func (f *flaky) fail(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	return f.calls[op] <= f.failures
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.fail("put") {
		_, _ = io.CopyN(io.Discard, r, int64(f.readBefore))
		return f.err
	}
	return f.ObjectStore.Put(ctx, key, r, size)
}

func (f *flaky) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	if f.fail("stat") {
		return transfer.ObjectInfo{}, f.err
	}
	return f.ObjectStore.Stat(ctx, key)
}

func (f *flaky) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if f.fail("create") {
		return "", f.err
	}
	return f.ObjectStore.PutIfAbsent(ctx, key, data)
}

func TestTransientThenSuccess(t *testing.T) {
	f := newFlaky(3, errTransient)
	f.readBefore = 100
	var retries int
	opts := fast
	opts.OnRetry = func(string, string, int, error, time.Duration) { retries++ }
	s := retry.New(f, opts)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	// A seekable source is rewound for each attempt: the stored object is whole.
	if err := s.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put through three transient failures: %v", err)
	}
	rc, err := s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes after retries, want the %d-byte source", len(got), len(data))
	}
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("Stat through three transient failures: %v", err)
	}
	if f.calls["put"] != 4 || retries != 6 {
		t.Fatalf("put attempts %d, retries reported %d; want 4 and 6", f.calls["put"], retries)
	}
}

func TestNoRetryForPermanentOrPrecondition(t *testing.T) {
	for _, sentinel := range []error{transfer.ErrPermanent, transfer.ErrPrecondition, transfer.ErrNotExist, context.Canceled} {
		f := newFlaky(100, fmt.Errorf("put: %w", sentinel))
		s := retry.New(f, fast)
		err := s.Put(context.Background(), "k", bytes.NewReader([]byte("x")), 1)
		if !errors.Is(err, sentinel) || f.calls["put"] != 1 {
			t.Errorf("%v: Put made %d attempts and returned %v; want one attempt and the error", sentinel, f.calls["put"], err)
		}
	}
}

func TestGivesUpWithinBudget(t *testing.T) {
	f := newFlaky(1<<30, errTransient)
	s := retry.New(f, retry.Options{InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxElapsed: 300 * time.Millisecond})
	start := time.Now()
	_, err := s.Stat(context.Background(), "k")
	took := time.Since(start)
	if !errors.Is(err, errTransient) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("Stat against a dead store: %v, want the last error and how long it tried", err)
	}
	if f.calls["stat"] < 3 || took > 2*time.Second {
		t.Fatalf("%d attempts in %s: want several attempts within the 300ms budget", f.calls["stat"], took)
	}
}

func TestStopsOnCancel(t *testing.T) {
	f := newFlaky(1<<30, errTransient)
	s := retry.New(f, retry.Options{InitialDelay: time.Second, MaxDelay: time.Second, MaxElapsed: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("Stat cancelled during backoff: %v after %s, want context.Canceled promptly", err, time.Since(start))
	}
}

func TestUnseekableSource(t *testing.T) {
	// Bytes already consumed: not retried, the error comes back.
	f := newFlaky(1, errTransient)
	f.readBefore = 10
	s := retry.New(f, fast)
	src := io.MultiReader(strings.NewReader("0123456789abcdef"))
	if err := s.Put(context.Background(), "k", src, 16); !errors.Is(err, errTransient) || f.calls["put"] != 1 {
		t.Fatalf("Put of a consumed unseekable source: %v after %d attempts; want the error after 1", err, f.calls["put"])
	}
	// Nothing consumed yet (connection refused): retried.
	f = newFlaky(2, errTransient)
	s = retry.New(f, fast)
	src = io.MultiReader(strings.NewReader("0123456789abcdef"))
	if err := s.Put(context.Background(), "k", src, 16); err != nil || f.calls["put"] != 3 {
		t.Fatalf("Put of an untouched unseekable source: %v after %d attempts; want success after 3", err, f.calls["put"])
	}
}

// breakingGets serves each Get body only partly the first times, then
// fails the read with a transient error.
type breakingGets struct {
	transfer.ObjectStore
	breaks int
	opens  []int64
}

func (b *breakingGets) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	b.opens = append(b.opens, off)
	rc, err := b.ObjectStore.Get(ctx, key, off, length)
	if err != nil || b.breaks == 0 {
		return rc, err
	}
	b.breaks--
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 1000), errReader{}), rc}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestGetResumes(t *testing.T) {
	b := &breakingGets{ObjectStore: memstore.New(), breaks: 3}
	s := retry.New(b, fast)
	ctx := context.Background()
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := s.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "k", 500, 8000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data[500:8500]) {
		t.Fatalf("ranged Get through 3 broken bodies: %d bytes, %v; want bytes 500..8500", len(got), err)
	}
	if want := []int64{500, 1500, 2500, 3500}; fmt.Sprint(b.opens) != fmt.Sprint(want) {
		t.Fatalf("Get opened at offsets %v, want %v", b.opens, want)
	}
}

// breakingList fails the first listing after passing three keys to fn.
type breakingList struct {
	transfer.ObjectStore
	broken bool
}

func (b *breakingList) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	n := 0
	err := b.ObjectStore.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		if !b.broken && n == 3 {
			b.broken = true
			return errTransient
		}
		n++
		return fn(oi)
	})
	return err
}

func TestListRetryDeliversOnce(t *testing.T) {
	b := &breakingList{ObjectStore: memstore.New()}
	s := retry.New(b, fast)
	ctx := context.Background()
	for i := range 6 {
		if err := s.Put(ctx, fmt.Sprintf("k%d", i), bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	if err := s.List(ctx, "", func(oi transfer.ObjectInfo) error { seen = append(seen, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[k0 k1 k2 k3 k4 k5]" || !b.broken {
		t.Fatalf("List with a retried failure delivered %v, want each key once", seen)
	}
	// An error from fn is returned as is, not retried.
	stop := fmt.Errorf("stop: %w", errTransient)
	calls := 0
	err := s.List(ctx, "", func(transfer.ObjectInfo) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("List with a failing fn: %v after %d calls, want fn's error after 1", err, calls)
	}
}
