package transfertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/portvol/portvol/transfer"
)

func testConditional(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	key := "cond/head.json"
	v1 := []byte(`{"generation":1}`)
	etag1, err := s.PutIfAbsent(ctx, key, v1)
	if err != nil {
		t.Fatalf("PutIfAbsent on a missing key: %v", err)
	}
	if etag1 == "" {
		t.Fatal("PutIfAbsent returned an empty ETag")
	}
	data, etag, err := s.Load(ctx, key, maxLoad)
	if err != nil || !bytes.Equal(data, v1) || etag != etag1 {
		t.Fatalf("Load = %q, %q, %v; want %q with the ETag PutIfAbsent returned (%q)", data, etag, err, v1, etag1)
	}
	oi, err := s.Stat(ctx, key)
	if err != nil || oi.ETag != etag1 {
		t.Fatalf("Stat = %+v, %v; want ETag %q", oi, err, etag1)
	}

	_, err = s.PutIfAbsent(ctx, key, []byte(`{"generation":99}`))
	wantPrecondition(t, "PutIfAbsent on an existing key", err)

	v2 := []byte(`{"generation":2}`)
	etag2, err := s.PutIfMatch(ctx, key, v2, etag1)
	if err != nil {
		t.Fatalf("PutIfMatch with the current ETag: %v", err)
	}
	if etag2 == "" || etag2 == etag1 {
		t.Fatalf("PutIfMatch returned ETag %q after %q: want a new one", etag2, etag1)
	}
	_, err = s.PutIfMatch(ctx, key, []byte(`{"generation":3}`), etag1)
	wantPrecondition(t, "PutIfMatch with a stale ETag", err)
	data, etag, err = s.Load(ctx, key, maxLoad)
	if err != nil || !bytes.Equal(data, v2) || etag != etag2 {
		t.Fatalf("after a failed PutIfMatch Load = %q, %q, %v; want %q, %q", data, etag, err, v2, etag2)
	}

	// Same size, different bytes: the ETag must still tell them apart.
	v3 := []byte(`{"generation":3}`)
	etag3, err := s.PutIfMatch(ctx, key, v3, etag2)
	if err != nil || etag3 == etag2 {
		t.Fatalf("PutIfMatch with same-size content: ETag %q (was %q), %v", etag3, etag2, err)
	}

	_, err = s.PutIfMatch(ctx, "cond/missing.json", v1, etag1)
	wantPrecondition(t, "PutIfMatch on a missing key", err)
	if _, err := s.Stat(ctx, "cond/missing.json"); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("a failed PutIfMatch created the key: Stat error %v", err)
	}

	// After Delete the key can be created again.
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(ctx, key, v1); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
}

const racers = 12

// testCreateRace: many writers create the same record; exactly one wins
// and the record holds the winner's bytes.
func testCreateRace(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	for round := range 5 {
		key := fmt.Sprintf("race/create-%d", round)
		var wg sync.WaitGroup
		errs := make([]error, racers)
		etags := make([]string, racers)
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				etags[i], errs[i] = s.PutIfAbsent(ctx, key, fmt.Appendf(nil, "writer %d", i))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both created %q", round, winner, i, key)
				}
				winner = i
			case !errors.Is(err, transfer.ErrPrecondition):
				t.Fatalf("round %d: writer %d: %v, want success or ErrPrecondition", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer created %q", round, key)
		}
		data, etag, err := s.Load(ctx, key, maxLoad)
		if err != nil || string(data) != fmt.Sprintf("writer %d", winner) || etag != etags[winner] {
			t.Fatalf("round %d: Load = %q, %q, %v; want the winner's (%d) bytes and ETag %q", round, data, etag, err, winner, etags[winner])
		}
	}
}

// testReplaceRace: many writers replace the same version; exactly one wins,
// the others see ErrPrecondition.
func testReplaceRace(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	key := "race/replace"
	etag, err := s.PutIfAbsent(ctx, key, []byte("v0"))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, racers)
		etags := make([]string, racers)
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				etags[i], errs[i] = s.PutIfMatch(ctx, key, fmt.Appendf(nil, "round %d writer %02d", round, i), etag)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both replaced ETag %q", round, winner, i, etag)
				}
				winner = i
			case !errors.Is(err, transfer.ErrPrecondition):
				t.Fatalf("round %d: writer %d: %v, want success or ErrPrecondition", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer replaced %q", round, key)
		}
		data, cur, err := s.Load(ctx, key, maxLoad)
		if err != nil || string(data) != fmt.Sprintf("round %d writer %02d", round, winner) || cur != etags[winner] {
			t.Fatalf("round %d: Load = %q, %q, %v; want writer %d's bytes and ETag", round, data, cur, err, winner)
		}
		etag = cur
	}
}

// testCounter: writers increment a shared counter with Load + PutIfMatch
// until they succeed; no increment may be lost.
func testCounter(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	const writers, each = 6, 8
	key := "race/counter"
	if _, err := s.PutIfAbsent(ctx, key, []byte(`{"n":0}`)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for range each {
				for {
					data, etag, err := s.Load(ctx, key, maxLoad)
					if err != nil {
						errs <- err
						return
					}
					var c struct{ N int }
					if err := json.Unmarshal(data, &c); err != nil {
						errs <- fmt.Errorf("record %q: %w", data, err)
						return
					}
					c.N++
					next, _ := json.Marshal(c)
					_, err = s.PutIfMatch(ctx, key, next, etag)
					if err == nil {
						break
					}
					if !errors.Is(err, transfer.ErrPrecondition) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	data, _, err := s.Load(ctx, key, maxLoad)
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ N int }
	if err := json.Unmarshal(data, &c); err != nil || c.N != writers*each {
		t.Fatalf("counter = %q (%v), want %d: an increment was lost or doubled", data, err, writers*each)
	}
}
