package transfer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrConditionalIgnored: the store accepted a conditional write whose
// condition was false, so it cannot keep two writers of one record apart.
// Errors matching it also match ErrPermanent.
var ErrConditionalIgnored = errors.New("the store does not honour conditional writes")

// ProbePrefix is where ProbeConditional writes its probe objects, one per
// probe, each deleted when the probe ends.
const ProbePrefix = "probes/"

// ProbeConditional proves that store honours conditional writes before
// anyone relies on them, on a fresh object under ProbePrefix:
//
//  1. PutIfAbsent of a new key must succeed;
//  2. PutIfAbsent of the same key must be refused (ErrPrecondition);
//  3. PutIfMatch with an ETag the object does not have must be refused;
//  4. PutIfMatch of a key that does not exist must be refused, and create
//     nothing;
//  5. PutIfMatch with the object's ETag must succeed.
//
// A store that applies the write of step 2, 3 or 4 (it ignores
// If-None-Match or If-Match), or refuses step 5, fails with an error matching
// ErrConditionalIgnored and ErrPermanent that says which step and what the
// store answered. A step that fails for another reason (the network, a
// permission) returns that error: the probe proved nothing either way.
func ProbeConditional(ctx context.Context, store ObjectStore) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	key := ProbePrefix + hex.EncodeToString(rnd[:])
	etag, err := store.PutIfAbsent(ctx, key, []byte("portvol conditional-write probe 1\n"))
	if err != nil {
		return fmt.Errorf("conditional-write probe: creating %q: %w", key, err)
	}
	// The object is removed whatever happens next; a failed delete leaves
	// a few bytes under ProbePrefix, which nothing reads.
	defer func() { _ = store.Delete(context.WithoutCancel(ctx), key) }()

	refused := func(step, answer string) error {
		return fmt.Errorf("conditional-write probe on %q: %s must be refused with 412 Precondition Failed, but the store answered %s: %w: %w",
			key, step, answer, ErrConditionalIgnored, ErrPermanent)
	}
	newETag, err := store.PutIfAbsent(ctx, key, []byte("portvol conditional-write probe 2\n"))
	switch {
	case err == nil:
		return refused("a create with If-None-Match: * of an object that exists", fmt.Sprintf("success (ETag %q)", newETag))
	case errors.Is(err, ErrPermanent):
		return refused("a create with If-None-Match: * of an object that exists", fmt.Sprintf("%q", err.Error()))
	case !errors.Is(err, ErrPrecondition):
		return fmt.Errorf("conditional-write probe: %w", err)
	}
	wrong := "0123456789abcdef0123456789abcdef"
	if etag == wrong {
		wrong = "fedcba9876543210fedcba9876543210"
	}
	newETag, err = store.PutIfMatch(ctx, key, []byte("portvol conditional-write probe 3\n"), wrong)
	switch {
	case err == nil:
		return refused(fmt.Sprintf("a replace with If-Match: %q (the object's ETag is %q)", wrong, etag), fmt.Sprintf("success (ETag %q)", newETag))
	case errors.Is(err, ErrPermanent):
		return refused(fmt.Sprintf("a replace with If-Match: %q (the object's ETag is %q)", wrong, etag), fmt.Sprintf("%q", err.Error()))
	case !errors.Is(err, ErrPrecondition):
		return fmt.Errorf("conditional-write probe: %w", err)
	}
	absent := key + "-absent"
	newETag, err = store.PutIfMatch(ctx, absent, []byte("portvol conditional-write probe 4\n"), etag)
	switch {
	case err == nil:
		_ = store.Delete(context.WithoutCancel(ctx), absent)
		return refused(fmt.Sprintf("a replace with If-Match: %q of an object that does not exist", etag), fmt.Sprintf("success, creating it (ETag %q)", newETag))
	case errors.Is(err, ErrPermanent):
		return refused(fmt.Sprintf("a replace with If-Match: %q of an object that does not exist", etag), fmt.Sprintf("%q", err.Error()))
	case !errors.Is(err, ErrPrecondition):
		return fmt.Errorf("conditional-write probe: %w", err)
	}
	if _, err := store.PutIfMatch(ctx, key, []byte("portvol conditional-write probe 5\n"), etag); err != nil {
		if errors.Is(err, ErrPrecondition) || errors.Is(err, ErrPermanent) {
			return fmt.Errorf("conditional-write probe on %q: a replace with If-Match: the object's own ETag %q was refused (%w): the store does not match ETags as S3 does: %w: %w",
				key, etag, err, ErrConditionalIgnored, ErrPermanent)
		}
		return fmt.Errorf("conditional-write probe: %w", err)
	}
	return nil
}
