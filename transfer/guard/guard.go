package guard

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

// Check proves that the store is the one the caller joined; it returns nil
// if so, or why not.
type Check func(ctx context.Context) error

// Store is a transfer.ObjectStore whose negative answers are checked
// against the store's identity.
type Store struct {
	transfer.ObjectStore
	check Check
}

// New returns store guarded by check.
func New(store transfer.ObjectStore, check Check) *Store {
	return &Store{ObjectStore: store, check: check}
}

// confirm returns err, the store's negative answer about key, if the store
// passes its check, and otherwise the check's error.
func (s *Store) confirm(ctx context.Context, op, key string, err error) error {
	if cerr := s.check(ctx); cerr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %q: %w", op, key, ctx.Err())
		}
		return fmt.Errorf("%s %q: %w", op, key, cerr)
	}
	return err
}

// Get implements transfer.ObjectStore.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.ObjectStore.Get(ctx, key, off, length)
	if errors.Is(err, transfer.ErrNotExist) {
		return nil, s.confirm(ctx, "get", key, err)
	}
	return rc, err
}

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	oi, err := s.ObjectStore.Stat(ctx, key)
	if errors.Is(err, transfer.ErrNotExist) {
		return oi, s.confirm(ctx, "stat", key, err)
	}
	return oi, err
}

// Load implements transfer.ObjectStore.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	data, etag, err := s.ObjectStore.Load(ctx, key, limit)
	if errors.Is(err, transfer.ErrNotExist) {
		return nil, "", s.confirm(ctx, "load", key, err)
	}
	return data, etag, err
}

// PutIfMatch implements transfer.ObjectStore. A refused replace may mean
// that the record is gone with the whole store.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	newETag, err := s.ObjectStore.PutIfMatch(ctx, key, data, etag)
	if errors.Is(err, transfer.ErrPrecondition) {
		return "", s.confirm(ctx, "replace", key, err)
	}
	return newETag, err
}

// List implements transfer.ObjectStore. A listing that finds nothing is
// confirmed before it is believed.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	found := false
	err := s.ObjectStore.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		found = true
		return fn(oi)
	})
	if err == nil && !found {
		return s.confirm(ctx, "list", prefix, nil)
	}
	return err
}
