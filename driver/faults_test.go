package driver

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/portvol/portvol/transfer"
)

// faultStore wraps a real store to inject faults: while down, every call
// fails as an unreachable server would; a gate holds the calls of one kind
// on keys with a prefix until it is opened.
type faultStore struct {
	transfer.ObjectStore
	down atomic.Bool

	mu     sync.Mutex
	gates  []*gate
	gotten atomic.Int64 // bytes read through Get
}

type gate struct {
	op, prefix string
	entered    chan struct{} // closed at the first call held
	open       chan struct{}
	once       sync.Once
}

var errDown = errors.New("dial tcp 127.0.0.1:9: connect: connection refused")

// hold makes calls of op ("get" or "put") on keys under prefix wait until
// the returned gate is opened (release).
func (f *faultStore) hold(op, prefix string) *gate {
	g := &gate{op: op, prefix: prefix, entered: make(chan struct{}), open: make(chan struct{})}
	f.mu.Lock()
	f.gates = append(f.gates, g)
	f.mu.Unlock()
	return g
}

func (g *gate) release() { close(g.open) }

func (f *faultStore) wait(ctx context.Context, op, key string) error {
	if f.down.Load() {
		return errDown
	}
	f.mu.Lock()
	gates := append([]*gate(nil), f.gates...)
	f.mu.Unlock()
	for _, g := range gates {
		if g.op == op && strings.HasPrefix(key, g.prefix) {
			g.once.Do(func() { close(g.entered) })
			select {
			case <-g.open:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func (f *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.wait(ctx, "put", key); err != nil {
		return err
	}
	return f.ObjectStore.Put(ctx, key, r, size)
}

func (f *faultStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := f.wait(ctx, "get", key); err != nil {
		return nil, err
	}
	rc, err := f.ObjectStore.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc, &f.gotten}, nil
}

func (f *faultStore) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	if f.down.Load() {
		return transfer.ObjectInfo{}, errDown
	}
	return f.ObjectStore.Stat(ctx, key)
}

func (f *faultStore) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.ObjectStore.List(ctx, prefix, fn)
}

func (f *faultStore) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	if f.down.Load() {
		return nil, "", errDown
	}
	return f.ObjectStore.Load(ctx, key, limit)
}

func (f *faultStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if err := f.wait(ctx, "put", key); err != nil {
		return "", err
	}
	return f.ObjectStore.PutIfAbsent(ctx, key, data)
}

func (f *faultStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if err := f.wait(ctx, "put", key); err != nil {
		return "", err
	}
	return f.ObjectStore.PutIfMatch(ctx, key, data, etag)
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
