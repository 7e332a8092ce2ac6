package leasetest

import (
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/faultstore"
)

var _ transfer.ObjectStore = (*FaultStore)(nil)

// ErrInjected is the transient error a FaultStore returns.
var ErrInjected = faultstore.ErrInjected

// Fault is what a FaultStore does to one call (transfer/faultstore's).
type Fault = faultstore.Fault

// The faults.
const (
	Pass = faultstore.Pass // call through
	Fail = faultstore.Fail // return ErrInjected without calling through
	Lose = faultstore.Lose // call through, then return ErrInjected: a lost response
)

// Op names the calls a FaultStore can disturb.
type Op = faultstore.Op

// The disturbed calls.
const (
	OpLoad   = faultstore.OpLoad
	OpCreate = faultstore.OpCreate  // PutIfAbsent
	OpUpdate = faultstore.OpReplace // PutIfMatch
)

// FaultStore is transfer/faultstore's decorator as the lease tests use
// it: Load, PutIfAbsent and PutIfMatch disturbed, first with faults queued
// by Inject, then at random with the rates set by SetRates.
type FaultStore struct {
	*faultstore.Store
}

// NewFaultStore wraps inner; it injects nothing until told to.
func NewFaultStore(inner transfer.ObjectStore, seed uint64) *FaultStore {
	return &FaultStore{faultstore.New(inner, seed)}
}

// SetRates makes every disturbed call fail with probability fail, and a
// write that goes through lose its response with probability lose.
func (s *FaultStore) SetRates(fail, lose float64) {
	s.SetOpRates(faultstore.Rates{Fail: fail}, OpLoad)
	s.SetOpRates(faultstore.Rates{Fail: fail, Lose: lose}, OpCreate, OpUpdate)
}

// Injected returns how many faults of kind f were injected.
func (s *FaultStore) Injected(f Fault) int {
	return s.Count(OpLoad, f) + s.Count(OpCreate, f) + s.Count(OpUpdate, f)
}
