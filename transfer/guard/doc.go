// Package guard is a transfer.ObjectStore decorator that keeps "it is not
// there" answers honest. A store whose directory is not mounted, whose
// bucket or prefix was emptied, or that was replaced by another store at
// the same address answers every read with "does not exist" — which a
// caller would take for "this volume was removed" and act on (forget local
// copies, create anew).
//
// The guard runs the caller's identity check whenever an answer could be
// such a lie: Get, Stat or Load of a missing object, a PutIfMatch refused
// by its condition (the record may be gone), and a List that yields
// nothing. If the check fails — the store is missing (it should match
// transfer.ErrStoreMissing) or another one (transfer.ErrWrongStore), or the
// check could not be done — its error replaces the answer, so no caller
// ever sees ErrNotExist, ErrPrecondition or an empty listing from a store
// that is not the one it joined. Answers that prove the store is there
// (an object was read, a write was applied) pass through unchecked.
//
// It owns: when to check. It must not know what the check reads (the
// snapshot store configuration, in portvol) or any concrete store; it
// imports the transfer root package only. cmd/portvol composes it above
// the retrying store.
package guard
