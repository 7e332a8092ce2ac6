package faultstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/transfertest"
)

// Without faults the decorator is a store like any other.
func TestConformanceWithoutFaults(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore { return New(memstore.New(), 1) })
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	inner := memstore.New()
	s := New(inner, 1)

	// Fail: nothing reaches the store.
	s.Inject(OpCreate, Fail)
	if _, err := s.PutIfAbsent(ctx, "a", []byte("1")); !errors.Is(err, ErrInjected) {
		t.Fatalf("failed create: %v", err)
	}
	if _, err := inner.Stat(ctx, "a"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("a failed create reached the store: %v", err)
	}

	// Lose: the write lands, its caller hears an error.
	s.Inject(OpCreate, Lose)
	if _, err := s.PutIfAbsent(ctx, "a", []byte("1")); !errors.Is(err, ErrInjected) {
		t.Fatalf("lost create: %v", err)
	}
	data, etag, err := inner.Load(ctx, "a", 10)
	if err != nil || string(data) != "1" {
		t.Fatalf("a lost create did not land: %q, %v", data, err)
	}

	// Late: the write is visible before the answer; a caller that gives
	// up gets its context's error for a write that landed.
	s.Inject(OpReplace, Late)
	s.SetOpRates(Rates{MaxDelay: time.Hour}, OpReplace)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.PutIfMatch(cctx, "a", []byte("2"), etag)
		done <- err
	}()
	for {
		if d, _, _ := inner.Load(ctx, "a", 10); string(d) == "2" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a late answer came at once: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("late answer after the caller gave up: %v", err)
	}

	// Reads: a lost answer is a failure; Get fails before any data.
	s.Inject(OpGet, Lose)
	if _, err := s.Get(ctx, "a", 0, -1); !errors.Is(err, ErrInjected) {
		t.Fatalf("lost get: %v", err)
	}
	rc, err := s.Get(ctx, "a", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "2" {
		t.Fatalf("get after the fault: %q", got)
	}

	// Cut: every call fails until Heal.
	s.Cut()
	if err := s.Put(ctx, "b", bytes.NewReader([]byte("x")), 1); !errors.Is(err, ErrCut) {
		t.Fatalf("put while cut: %v", err)
	}
	if _, _, err := s.Load(ctx, "a", 10); !errors.Is(err, ErrCut) {
		t.Fatalf("load while cut: %v", err)
	}
	s.Heal()
	if err := s.Put(ctx, "b", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatalf("put after heal: %v", err)
	}
	if got := s.Summary(); !strings.Contains(got, "create: 1 fail, 1 lose") || !strings.Contains(got, "get: 1 lose") {
		t.Errorf("summary: %s", got)
	}
}

// The same seed and the same calls give the same faults; the rates are
// about right.
func TestRatesAreSeeded(t *testing.T) {
	run := func(seed uint64) (string, [4]int) {
		s := New(memstore.New(), seed)
		s.SetRates(Rates{Fail: 0.1, Lose: 0.1, Late: 0.1, MaxDelay: time.Microsecond})
		var trace strings.Builder
		var n [4]int
		for i := range 2000 {
			_, err := s.PutIfAbsent(context.Background(), "k"+strings.Repeat("x", i%7), []byte("v"))
			switch {
			case errors.Is(err, ErrInjected):
				trace.WriteByte('e')
			case err != nil:
				trace.WriteByte('p')
			default:
				trace.WriteByte('.')
			}
		}
		for f := range 4 {
			n[f] = s.Count(OpCreate, Fault(f))
		}
		return trace.String(), n
	}
	a, na := run(42)
	b, nb := run(42)
	c, _ := run(43)
	if a != b || na != nb {
		t.Fatal("the same seed gave different faults")
	}
	if a == c {
		t.Fatal("different seeds gave the same faults")
	}
	for _, f := range []Fault{Fail, Lose, Late} {
		if na[f] < 140 || na[f] > 260 {
			t.Errorf("%s: %d of 2000 calls at a rate of 10%%", f, na[f])
		}
	}
}

// Only limits random faults to the calls it keeps.
func TestOnly(t *testing.T) {
	s := New(memstore.New(), 3)
	s.SetRates(Rates{Fail: 1})
	s.Only(func(op Op, key string) bool { return strings.HasSuffix(key, "head.json") })
	if err := s.Put(context.Background(), "packs/p", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("a call Only does not keep was disturbed: %v", err)
	}
	if _, err := s.PutIfAbsent(context.Background(), "volumes/v/head.json", nil); !errors.Is(err, ErrInjected) {
		t.Fatalf("a call Only keeps was not disturbed: %v", err)
	}
}
