package transfer

import (
	"context"
	"errors"
)

// Sentinel errors. Stores wrap them with the key and operation:
// fmt.Errorf("get %q: %w", key, transfer.ErrNotExist).
var (
	// ErrNotExist: the object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrPrecondition: a conditional write found the object in another
	// state than required (present for PutIfAbsent, another ETag for
	// PutIfMatch).
	ErrPrecondition = errors.New("precondition failed")
	// ErrPermanent: retrying cannot help (bad credentials, access denied,
	// no such bucket, invalid request). The wrapped message says what to fix.
	ErrPermanent = errors.New("permanent store error")
	// ErrTooLarge: the object is larger than the bound its reader gave, so
	// it was not read: it is not the small record the reader expects
	// (damaged, or planted). The wrapping error names the key, the size
	// and the bound.
	ErrTooLarge = errors.New("object is larger than its bound")
	// ErrStoreMissing: the store itself is gone or empty (its directory is
	// not mounted, its bucket or prefix was emptied), so a missing object
	// says nothing about the object. Callers must treat it as "store
	// unavailable", never as "object does not exist".
	ErrStoreMissing = errors.New("the store is missing or empty")
	// ErrWrongStore: another store than the one joined answers at the
	// store's address.
	ErrWrongStore = errors.New("another store answers at this address")
)

// Retryable reports whether err may go away if the operation is repeated:
// it is false for nil, not-exist, precondition, permanent, too-large and
// store-identity errors and cancellation by the caller. Callers that
// retry also stop when their own context is done.
func Retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrNotExist),
		errors.Is(err, ErrPrecondition),
		errors.Is(err, ErrPermanent),
		errors.Is(err, ErrTooLarge),
		errors.Is(err, ErrStoreMissing),
		errors.Is(err, ErrWrongStore),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}
