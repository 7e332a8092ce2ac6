// Package faultstore is a transfer.ObjectStore decorator that disturbs the
// calls to the store it wraps the way a network and a busy server do: an
// answer comes late, a write is applied but its answer is lost, a call
// fails without reaching the store, or the store is cut off altogether.
// It is for tests (the randomized driver test, the lease simulation, any
// test that needs a misbehaving store), never for production wiring.
//
// Faults come first from queues (Inject: exactly these faults for the next
// calls of one kind), then at random with per-kind rates drawn from one
// seeded generator: the same seed and the same sequence of calls give the
// same faults. Which call comes first is up to the caller's goroutines, so
// a concurrent user reproduces its faults only as far as it reproduces its
// order of calls.
package faultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

// ErrInjected is the transient error of an injected failure or a lost
// answer; it reads like what a real client reports.
var ErrInjected = errors.New("injected fault: connection reset by peer")

// ErrCut is what every call returns while the store is cut off (Cut).
var ErrCut = errors.New("injected fault: dial tcp 127.0.0.1:9: connect: connection refused")

// Op is a kind of call.
type Op string

// The calls a Store disturbs.
const (
	OpPut     Op = "put"
	OpGet     Op = "get"
	OpStat    Op = "stat"
	OpList    Op = "list"
	OpDelete  Op = "delete"
	OpLoad    Op = "load"
	OpCreate  Op = "create"  // PutIfAbsent
	OpReplace Op = "replace" // PutIfMatch
)

// Ops lists every Op.
var Ops = []Op{OpPut, OpGet, OpStat, OpList, OpDelete, OpLoad, OpCreate, OpReplace}

// writes are the Ops that change the store.
func (o Op) write() bool {
	return o == OpPut || o == OpDelete || o == OpCreate || o == OpReplace
}

// Fault is what a Store does to one call.
type Fault int

// The faults.
const (
	// Pass calls through.
	Pass Fault = iota
	// Fail returns ErrInjected without calling through: nothing happened.
	Fail
	// Lose calls through, then returns ErrInjected: a write took effect but
	// its caller cannot know (a read just fails).
	Lose
	// Late calls through at once and answers after a delay (up to
	// Rates.MaxDelay): a write is visible to others before its caller
	// hears of it; a caller that gives up meanwhile gets its context's
	// error for a write that took effect.
	Late
)

func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	case Lose:
		return "lose"
	case Late:
		return "late"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Rates are the chances that one call fails, loses its answer or answers
// late. Lose applies to writes only (a read whose answer is lost is a
// failure).
type Rates struct {
	Fail, Lose, Late float64
	// MaxDelay bounds a late answer's delay (default 20ms); the delay is
	// drawn uniformly from (0, MaxDelay].
	MaxDelay time.Duration
}

func (r Rates) String() string {
	return fmt.Sprintf("fail %.1f%%, lose %.1f%%, late %.1f%% (≤%s)", 100*r.Fail, 100*r.Lose, 100*r.Late, r.maxDelay())
}

func (r Rates) maxDelay() time.Duration {
	if r.MaxDelay <= 0 {
		return 20 * time.Millisecond
	}
	return r.MaxDelay
}

// Store wraps a transfer.ObjectStore and disturbs its calls. It is safe
// for concurrent use.
type Store struct {
	inner transfer.ObjectStore

	mu     sync.Mutex
	rng    *rand.Rand
	rates  map[Op]Rates
	filter func(op Op, key string) bool
	queued map[Op][]Fault
	counts map[Op]map[Fault]int
	cut    bool
}

// New wraps inner with a generator seeded by seed. It injects nothing
// until told to (SetRates, SetOpRates, Inject, Cut).
func New(inner transfer.ObjectStore, seed uint64) *Store {
	return &Store{
		inner:  inner,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rates:  map[Op]Rates{},
		queued: map[Op][]Fault{},
		counts: map[Op]map[Fault]int{},
	}
}

// Inner returns the wrapped store.
func (s *Store) Inner() transfer.ObjectStore { return s.inner }

// SetRates sets the same rates for every kind of call.
func (s *Store) SetRates(r Rates) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range Ops {
		s.rates[op] = r
	}
}

// SetOpRates sets the rates of the given kinds of call.
func (s *Store) SetOpRates(r Rates, ops ...Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		s.rates[op] = r
	}
}

// Only limits the random faults to calls for which keep returns true (nil:
// every call). Queued faults and Cut ignore it.
func (s *Store) Only(keep func(op Op, key string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filter = keep
}

// Inject queues faults for the next calls of op, in order, ahead of the
// random ones.
func (s *Store) Inject(op Op, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued[op] = append(s.queued[op], faults...)
}

// Cut makes every later call fail with ErrCut without reaching the store
// (a server that went away, or a process that is gone); calls already
// under way finish. Heal ends it.
func (s *Store) Cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = true
}

// Heal ends a Cut.
func (s *Store) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = false
}

// Count returns how many calls of op got fault f.
func (s *Store) Count(op Op, f Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op][f]
}

// Summary describes the faults injected so far, for a test's log:
// "put: 3 fail, 1 late; load: 2 lose".
func (s *Store) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, op := range Ops {
		var fs []string
		for _, f := range []Fault{Fail, Lose, Late} {
			if n := s.counts[op][f]; n > 0 {
				fs = append(fs, fmt.Sprintf("%d %s", n, f))
			}
		}
		if len(fs) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", op, strings.Join(fs, ", ")))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no faults"
	}
	return strings.Join(parts, "; ")
}

// next decides what happens to one call of op on key, and how long a late
// answer waits.
func (s *Store) next(op Op, key string) (Fault, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return Fail, 0, ErrCut
	}
	f := Pass
	r := s.rates[op]
	if q := s.queued[op]; len(q) > 0 {
		f, s.queued[op] = q[0], q[1:]
	} else if s.filter == nil || s.filter(op, key) {
		switch x := s.rng.Float64(); {
		case x < r.Fail:
			f = Fail
		case x < r.Fail+r.Lose:
			f = Lose
			if !op.write() {
				f = Fail
			}
		case x < r.Fail+r.Lose+r.Late:
			f = Late
		}
	}
	var delay time.Duration
	if f == Late {
		delay = time.Duration(1 + s.rng.Int64N(int64(r.maxDelay())))
	}
	if s.counts[op] == nil {
		s.counts[op] = map[Fault]int{}
	}
	s.counts[op][f]++
	return f, delay, nil
}

// after finishes a call that went through: a lost answer becomes
// ErrInjected, a late one waits first (or returns ctx's error).
func after(ctx context.Context, f Fault, delay time.Duration, err error) error {
	switch f {
	case Lose:
		return ErrInjected
	case Late:
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// Put implements transfer.ObjectStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	f, delay, err := s.next(OpPut, key)
	if err != nil {
		return err
	}
	if f == Fail {
		return ErrInjected
	}
	return after(ctx, f, delay, s.inner.Put(ctx, key, r, size))
}

// Get implements transfer.ObjectStore.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	f, delay, err := s.next(OpGet, key)
	if err != nil {
		return nil, err
	}
	if f == Fail {
		return nil, ErrInjected
	}
	rc, err := s.inner.Get(ctx, key, off, length)
	if err := after(ctx, f, delay, err); err != nil {
		if rc != nil {
			rc.Close()
		}
		return nil, err
	}
	return rc, nil
}

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	f, delay, err := s.next(OpStat, key)
	if err != nil {
		return transfer.ObjectInfo{}, err
	}
	if f == Fail {
		return transfer.ObjectInfo{}, ErrInjected
	}
	info, err := s.inner.Stat(ctx, key)
	if err := after(ctx, f, delay, err); err != nil {
		return transfer.ObjectInfo{}, err
	}
	return info, nil
}

// List implements transfer.ObjectStore. A late listing waits before its
// first entry.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	f, delay, err := s.next(OpList, prefix)
	if err != nil {
		return err
	}
	if f == Fail {
		return ErrInjected
	}
	if f == Late {
		if err := after(ctx, f, delay, nil); err != nil {
			return err
		}
	}
	return s.inner.List(ctx, prefix, fn)
}

// Delete implements transfer.ObjectStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	f, delay, err := s.next(OpDelete, key)
	if err != nil {
		return err
	}
	if f == Fail {
		return ErrInjected
	}
	return after(ctx, f, delay, s.inner.Delete(ctx, key))
}

// Load implements transfer.ObjectStore. A late answer carries the object as
// it was when it was read.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	f, delay, err := s.next(OpLoad, key)
	if err != nil {
		return nil, "", err
	}
	if f == Fail {
		return nil, "", ErrInjected
	}
	data, etag, err := s.inner.Load(ctx, key, limit)
	if err := after(ctx, f, delay, err); err != nil {
		return nil, "", err
	}
	return data, etag, nil
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	f, delay, err := s.next(OpCreate, key)
	if err != nil {
		return "", err
	}
	if f == Fail {
		return "", ErrInjected
	}
	etag, err := s.inner.PutIfAbsent(ctx, key, data)
	if err := after(ctx, f, delay, err); err != nil {
		return "", err
	}
	return etag, nil
}

// PutIfMatch implements transfer.ObjectStore.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	f, delay, err := s.next(OpReplace, key)
	if err != nil {
		return "", err
	}
	if f == Fail {
		return "", ErrInjected
	}
	newETag, err := s.inner.PutIfMatch(ctx, key, data, etag)
	if err := after(ctx, f, delay, err); err != nil {
		return "", err
	}
	return newETag, nil
}
