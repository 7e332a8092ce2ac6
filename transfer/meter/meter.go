package meter

import (
	"context"
	"errors"
	"io"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

// Reports receive what the Store sees. Nil functions are not called. They
// are called from the goroutines of the store's callers and must not block.
type Reports struct {
	// Sent is called with the bytes of each upload the store accepted.
	Sent func(n int64)
	// Received is called with bytes read from the store, as they are read.
	Received func(n int64)
	// Answered is called after each request with whether the store
	// answered it usefully (see the package doc); err is the failure, nil
	// if it answered.
	Answered func(ok bool, err error)
}

// Store wraps an ObjectStore with reports.
type Store struct {
	transfer.ObjectStore
	r Reports
}

// New returns s with reports r.
func New(s transfer.ObjectStore, r Reports) *Store {
	return &Store{ObjectStore: s, r: r}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() transfer.ObjectStore { return s.ObjectStore }

// answered reports err's verdict, and returns err.
func (s *Store) answered(err error) error {
	if s.r.Answered == nil || errors.Is(err, context.Canceled) {
		return err
	}
	if err == nil || errors.Is(err, transfer.ErrNotExist) || errors.Is(err, transfer.ErrPrecondition) ||
		errors.Is(err, transfer.ErrTooLarge) {
		s.r.Answered(true, nil)
	} else {
		s.r.Answered(false, err)
	}
	return err
}

func (s *Store) sent(n int64, err error) {
	if err == nil && n > 0 && s.r.Sent != nil {
		s.r.Sent(n)
	}
}

func (s *Store) received(n int64) {
	if n > 0 && s.r.Received != nil {
		s.r.Received(n)
	}
}

// Put implements transfer.ObjectStore. r is passed on as it is, so the
// store still sees a seekable or ReaderAt source.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := s.ObjectStore.Put(ctx, key, r, size)
	s.sent(size, err)
	return s.answered(err)
}

// Get implements transfer.ObjectStore; the body counts what is read from
// it, and a body that breaks is an unanswered request.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.ObjectStore.Get(ctx, key, off, length)
	if s.answered(err) != nil {
		return nil, err
	}
	return &body{rc: rc, s: s}, nil
}

type body struct {
	rc io.ReadCloser
	s  *Store
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.s.received(int64(n))
	if err != nil && err != io.EOF {
		b.s.answered(err)
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	oi, err := s.ObjectStore.Stat(ctx, key)
	return oi, s.answered(err)
}

// List implements transfer.ObjectStore. An error returned by fn is the
// caller's, not the store's, and is not reported.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	var fnErr error
	err := s.ObjectStore.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		fnErr = fn(oi)
		return fnErr
	})
	if err != nil && fnErr != nil && errors.Is(err, fnErr) {
		return err
	}
	return s.answered(err)
}

// Delete implements transfer.ObjectStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.answered(s.ObjectStore.Delete(ctx, key))
}

// Load implements transfer.ObjectStore.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	data, etag, err := s.ObjectStore.Load(ctx, key, limit)
	s.received(int64(len(data)))
	return data, etag, s.answered(err)
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	etag, err := s.ObjectStore.PutIfAbsent(ctx, key, data)
	s.sent(int64(len(data)), err)
	return etag, s.answered(err)
}

// PutIfMatch implements transfer.ObjectStore.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	newETag, err := s.ObjectStore.PutIfMatch(ctx, key, data, etag)
	s.sent(int64(len(data)), err)
	return newETag, s.answered(err)
}
