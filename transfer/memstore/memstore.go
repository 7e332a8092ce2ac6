// Package memstore is an in-memory transfer.ObjectStore for tests. It is
// safe for concurrent use and holds everything in RAM; nothing survives the
// process.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

type object struct {
	data    []byte
	etag    string
	modTime time.Time
}

// Store is an in-memory object store. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	objects map[string]object
	now     func() time.Time
}

// New returns an empty store.
func New() *Store { return &Store{objects: make(map[string]object), now: time.Now} }

// NewWithClock returns an empty store that stamps objects' ModTime with
// now, for simulations on a fake clock.
func NewWithClock(now func() time.Time) *Store {
	return &Store{objects: make(map[string]object), now: now}
}

func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func (s *Store) put(key string, data []byte) string {
	o := object{data: data, etag: etagOf(data), modTime: s.now()}
	s.objects[key] = o
	return o.etag
}

// Put implements transfer.ObjectStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := transfer.CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("put %q: reading %d bytes: %w", key, size, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, buf)
	return nil
}

// Get implements transfer.ObjectStore.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := transfer.CheckKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	o, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, transfer.ErrNotExist)
	}
	data := o.data
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	data = data[off:]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return transfer.ContextReader(ctx, io.NopCloser(bytes.NewReader(data))), nil
}

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	if err := transfer.CheckKey(key); err != nil {
		return transfer.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return transfer.ObjectInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return transfer.ObjectInfo{}, fmt.Errorf("stat %q: %w", key, transfer.ErrNotExist)
	}
	return transfer.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag, ModTime: o.modTime}, nil
}

// List implements transfer.ObjectStore.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	if err := transfer.CheckPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	var infos []transfer.ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, transfer.ObjectInfo{Key: k, Size: int64(len(o.data)), ETag: o.etag, ModTime: o.modTime})
		}
	}
	s.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements transfer.ObjectStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := transfer.CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, key)
	return nil
}

// Load implements transfer.ObjectStore.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	if err := transfer.CheckKey(key); err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return nil, "", fmt.Errorf("load %q: %w", key, transfer.ErrNotExist)
	}
	if int64(len(o.data)) > limit {
		return nil, "", transfer.TooLarge("load", key, int64(len(o.data)), limit)
	}
	return bytes.Clone(o.data), o.etag, nil
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if err := transfer.CheckKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; ok {
		return "", fmt.Errorf("create %q: exists: %w", key, transfer.ErrPrecondition)
	}
	return s.put(key, bytes.Clone(data)), nil
}

// PutIfMatch implements transfer.ObjectStore.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if err := transfer.CheckKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok || o.etag != etag {
		return "", fmt.Errorf("replace %q: etag changed: %w", key, transfer.ErrPrecondition)
	}
	return s.put(key, bytes.Clone(data)), nil
}
