package prune_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/portvol/portvol/transfer"
)

// faultStore injects what a real store does to a client: late answers,
// transient failures before a write applies, and answers lost after it
// applied. It never corrupts data (that is verify's business, not prune's).
type faultStore struct {
	transfer.ObjectStore
	mu   sync.Mutex
	rng  *rand.Rand
	fail float64 // probability of a transient error, before or after applying
}

var errInjected = errors.New("injected transient store error")

func (f *faultStore) roll() (delay time.Duration, before, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() < 0.05 {
		delay = time.Duration(f.rng.IntN(2000)) * time.Microsecond
	}
	if f.rng.Float64() < f.fail {
		if f.rng.IntN(2) == 0 {
			before = true
		} else {
			after = true
		}
	}
	return
}

func (f *faultStore) do(ctx context.Context, op func() error) error {
	delay, before, after := f.roll()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if before {
		return errInjected
	}
	err := op()
	if err == nil && after {
		return errInjected // applied, answer lost
	}
	return err
}

func (f *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return f.do(ctx, func() error { return f.ObjectStore.Put(ctx, key, r, size) })
}

func (f *faultStore) Get(ctx context.Context, key string, off, length int64) (rc io.ReadCloser, err error) {
	err = f.do(ctx, func() error { rc, err = f.ObjectStore.Get(ctx, key, off, length); return err })
	if err != nil && rc != nil {
		rc.Close()
		rc = nil
	}
	return rc, err
}

func (f *faultStore) Stat(ctx context.Context, key string) (oi transfer.ObjectInfo, err error) {
	err = f.do(ctx, func() error { oi, err = f.ObjectStore.Stat(ctx, key); return err })
	return oi, err
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	return f.do(ctx, func() error { return f.ObjectStore.Delete(ctx, key) })
}

func (f *faultStore) PutIfAbsent(ctx context.Context, key string, data []byte) (etag string, err error) {
	err = f.do(ctx, func() error { etag, err = f.ObjectStore.PutIfAbsent(ctx, key, data); return err })
	return etag, err
}

func (f *faultStore) PutIfMatch(ctx context.Context, key string, data []byte, prev string) (etag string, err error) {
	err = f.do(ctx, func() error { etag, err = f.ObjectStore.PutIfMatch(ctx, key, data, prev); return err })
	return etag, err
}

// killStore is one process's view of the store: after n operations the
// process is killed (its context cancelled), the n-th operation applying
// or not at random.
type killStore struct {
	transfer.ObjectStore
	mu     sync.Mutex
	left   int
	apply  bool
	cancel context.CancelFunc
}

func newKillStore(s transfer.ObjectStore, n int, apply bool, cancel context.CancelFunc) *killStore {
	return &killStore{ObjectStore: s, left: n, apply: apply, cancel: cancel}
}

func (k *killStore) step(ctx context.Context, op func() error) error {
	k.mu.Lock()
	k.left--
	hit := k.left == 0
	k.mu.Unlock()
	if !hit {
		if err := ctx.Err(); err != nil {
			return err
		}
		return op()
	}
	if k.apply {
		_ = op() // applied; the process dies before it learns the outcome
	}
	k.cancel()
	return context.Canceled
}

func (k *killStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return k.step(ctx, func() error { return k.ObjectStore.Put(ctx, key, r, size) })
}

func (k *killStore) Get(ctx context.Context, key string, off, length int64) (rc io.ReadCloser, err error) {
	err = k.step(ctx, func() error { rc, err = k.ObjectStore.Get(ctx, key, off, length); return err })
	if err != nil && rc != nil {
		rc.Close()
		rc = nil
	}
	return rc, err
}

func (k *killStore) Stat(ctx context.Context, key string) (oi transfer.ObjectInfo, err error) {
	err = k.step(ctx, func() error { oi, err = k.ObjectStore.Stat(ctx, key); return err })
	return oi, err
}

func (k *killStore) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	return k.step(ctx, func() error { return k.ObjectStore.List(ctx, prefix, fn) })
}

func (k *killStore) Delete(ctx context.Context, key string) error {
	return k.step(ctx, func() error { return k.ObjectStore.Delete(ctx, key) })
}

func (k *killStore) Load(ctx context.Context, key string, limit int64) (data []byte, etag string, err error) {
	err = k.step(ctx, func() error { data, etag, err = k.ObjectStore.Load(ctx, key, limit); return err })
	return data, etag, err
}

func (k *killStore) PutIfAbsent(ctx context.Context, key string, data []byte) (etag string, err error) {
	err = k.step(ctx, func() error { etag, err = k.ObjectStore.PutIfAbsent(ctx, key, data); return err })
	return etag, err
}

func (k *killStore) PutIfMatch(ctx context.Context, key string, data []byte, prev string) (etag string, err error) {
	err = k.step(ctx, func() error { etag, err = k.ObjectStore.PutIfMatch(ctx, key, data, prev); return err })
	return etag, err
}
