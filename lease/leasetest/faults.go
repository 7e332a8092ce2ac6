package leasetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*FaultStore)(nil)

// ErrInjected is the transient error a FaultStore returns.
var ErrInjected = errors.New("injected fault: connection reset by peer")

// Fault is what a FaultStore does to one call.
type Fault int

// The faults.
const (
	Pass Fault = iota // call through
	Fail              // return ErrInjected without calling through
	Lose              // call through, then return ErrInjected: a lost response
)

// Op names the calls a FaultStore can disturb.
type Op string

// The disturbed calls.
const (
	OpLoad   Op = "load"
	OpCreate Op = "create"  // PutIfAbsent
	OpUpdate Op = "replace" // PutIfMatch
)

// FaultStore wraps a store and disturbs Load, PutIfAbsent and PutIfMatch:
// first with faults queued by Inject, then at random with the rates set by
// SetRates. Other methods pass through.
type FaultStore struct {
	transfer.ObjectStore

	mu       sync.Mutex
	queued   map[Op][]Fault
	rng      *rand.Rand
	fail     float64
	lose     float64
	injected map[Fault]int
}

// NewFaultStore wraps inner; it injects nothing until told to.
func NewFaultStore(inner transfer.ObjectStore, seed uint64) *FaultStore {
	return &FaultStore{
		ObjectStore: inner, queued: make(map[Op][]Fault), injected: make(map[Fault]int),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// Inject queues faults for the next calls of op, in order.
func (s *FaultStore) Inject(op Op, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued[op] = append(s.queued[op], faults...)
}

// SetRates makes every disturbed call fail with probability fail, and a
// write that goes through lose its response with probability lose.
func (s *FaultStore) SetRates(fail, lose float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.lose = fail, lose
}

// Injected returns how many faults of kind f were injected.
func (s *FaultStore) Injected(f Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected[f]
}

func (s *FaultStore) next(op Op) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := Pass
	if q := s.queued[op]; len(q) > 0 {
		f, s.queued[op] = q[0], q[1:]
	} else if r := s.rng.Float64(); r < s.fail {
		f = Fail
	} else if op != OpLoad && r < s.fail+s.lose {
		f = Lose
	}
	s.injected[f]++
	return f
}

// Load implements transfer.ObjectStore.
func (s *FaultStore) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	f := s.next(OpLoad)
	if f == Fail {
		return nil, "", ErrInjected
	}
	data, etag, err := s.ObjectStore.Load(ctx, key, limit)
	if f == Lose {
		return nil, "", ErrInjected
	}
	return data, etag, err
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *FaultStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	f := s.next(OpCreate)
	if f == Fail {
		return "", ErrInjected
	}
	etag, err := s.ObjectStore.PutIfAbsent(ctx, key, data)
	if f == Lose {
		return "", ErrInjected
	}
	return etag, err
}

// PutIfMatch implements transfer.ObjectStore.
func (s *FaultStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	f := s.next(OpUpdate)
	if f == Fail {
		return "", ErrInjected
	}
	newETag, err := s.ObjectStore.PutIfMatch(ctx, key, data, etag)
	if f == Lose {
		return "", ErrInjected
	}
	return newETag, err
}
