package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

// Options tune the retries. Zero values mean the defaults.
type Options struct {
	// InitialDelay is the upper bound of the first wait; default 100ms.
	InitialDelay time.Duration
	// MaxDelay caps a single wait; default 5s.
	MaxDelay time.Duration
	// MaxElapsed bounds the time from the first attempt after which no
	// new attempt starts; default 1 minute.
	MaxElapsed time.Duration
	// OnRetry, if set, is called before each wait, for logging. It must
	// not block.
	OnRetry func(op, key string, attempt int, err error, wait time.Duration)
}

// Store wraps an ObjectStore with retries. It is safe for concurrent use
// if the wrapped store is.
type Store struct {
	transfer.ObjectStore
	opts Options
}

// New returns s with retries.
func New(s transfer.ObjectStore, opts Options) *Store {
	if opts.InitialDelay <= 0 {
		opts.InitialDelay = 100 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 5 * time.Second
	}
	if opts.MaxElapsed <= 0 {
		opts.MaxElapsed = time.Minute
	}
	return &Store{ObjectStore: s, opts: opts}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() transfer.ObjectStore { return s.ObjectStore }

// callbackError marks an error returned by List's fn: never retried.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

// do runs attempt until it succeeds, fails for good, the time budget is
// spent or ctx is done.
func (s *Store) do(ctx context.Context, op, key string, attempt func() error) error {
	start := time.Now()
	for n := 1; ; n++ {
		err := attempt()
		var cb *callbackError
		var nr *noRetry
		if err == nil || !transfer.Retryable(err) || errors.As(err, &cb) {
			return err
		}
		if errors.As(err, &nr) {
			return nr.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %q: %w (last error: %w)", op, key, context.Cause(ctx), err)
		}
		limit := s.opts.InitialDelay << min(n-1, 30)
		if limit <= 0 || limit > s.opts.MaxDelay {
			limit = s.opts.MaxDelay
		}
		wait := time.Duration(rand.Int64N(int64(limit) + 1))
		elapsed := time.Since(start)
		if elapsed+wait > s.opts.MaxElapsed {
			return fmt.Errorf("%s %q: gave up after %d attempts in %s: %w", op, key, n, elapsed.Round(time.Millisecond), err)
		}
		if s.opts.OnRetry != nil {
			s.opts.OnRetry(op, key, n, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s %q: %w (last error: %w)", op, key, context.Cause(ctx), err)
		}
	}
}

// Put implements transfer.ObjectStore; see the package doc for which
// sources can be retried.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if seeker, ok := r.(io.Seeker); ok {
		if start, err := seeker.Seek(0, io.SeekCurrent); err == nil {
			first := true
			return s.do(ctx, "put", key, func() error {
				if !first {
					if _, err := seeker.Seek(start, io.SeekStart); err != nil {
						return fmt.Errorf("put %q: rewinding the source for a retry: %w", key, err)
					}
				}
				first = false
				return s.ObjectStore.Put(ctx, key, r, size)
			})
		}
	}
	cr := &countingReader{r: r}
	return s.do(ctx, "put", key, func() error {
		err := s.ObjectStore.Put(ctx, key, cr, size)
		if err != nil && cr.n > 0 {
			// Bytes are gone from a source that cannot rewind.
			return &noRetry{err}
		}
		return err
	})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// noRetry carries an error that must not be retried although it is
// transient in itself.
type noRetry struct{ err error }

func (e *noRetry) Error() string { return e.err.Error() }
func (e *noRetry) Unwrap() error { return e.err }

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (oi transfer.ObjectInfo, err error) {
	err = s.do(ctx, "stat", key, func() error {
		oi, err = s.ObjectStore.Stat(ctx, key)
		return err
	})
	return oi, err
}

// Delete implements transfer.ObjectStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "delete", key, func() error { return s.ObjectStore.Delete(ctx, key) })
}

// Load implements transfer.ObjectStore.
func (s *Store) Load(ctx context.Context, key string, limit int64) (data []byte, etag string, err error) {
	err = s.do(ctx, "load", key, func() error {
		data, etag, err = s.ObjectStore.Load(ctx, key, limit)
		return err
	})
	return data, etag, err
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (etag string, err error) {
	err = s.do(ctx, "create", key, func() error {
		etag, err = s.ObjectStore.PutIfAbsent(ctx, key, data)
		return err
	})
	return etag, err
}

// PutIfMatch implements transfer.ObjectStore.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (newETag string, err error) {
	err = s.do(ctx, "replace", key, func() error {
		newETag, err = s.ObjectStore.PutIfMatch(ctx, key, data, etag)
		return err
	})
	return newETag, err
}

// List implements transfer.ObjectStore; fn sees each key once even when a
// listing is retried.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	var last string
	var started bool
	err := s.do(ctx, "list", prefix, func() error {
		return s.ObjectStore.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
			if started && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				return &callbackError{err}
			}
			last, started = oi.Key, true
			return nil
		})
	})
	var cb *callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	return err
}
