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

	// ErrStoreMissing: the store itself does not exist (an S3 bucket that
	// is not there). Errors matching it also match ErrPermanent.
	ErrStoreMissing = errors.New("store does not exist")
)

// Retryable reports whether err may go away if the operation is repeated:
// it is false for nil, not-exist, precondition, permanent errors and
// cancellation by the caller. Callers that retry also stop when their own
// context is done.
func Retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrNotExist),
		errors.Is(err, ErrPrecondition),
		errors.Is(err, ErrPermanent),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}
