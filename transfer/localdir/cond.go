package localdir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/portvol/portvol/transfer"
)

// Load implements transfer.ObjectStore. The bytes and the ETag come from
// one open file, so they belong together even while writers replace it.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	f, fi, err := openObject(p)
	if err != nil {
		return nil, "", fmt.Errorf("load %q: %w", key, err)
	}
	defer f.Close()
	if fi.Size() > limit {
		// Decided from the inode, before a byte is read or allocated.
		return nil, "", transfer.TooLarge("load", key, fi.Size(), limit)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, "", fmt.Errorf("load %q: %w", key, fsError(err))
	}
	if fi.Size() <= smallObject {
		return data, hashETag(data), nil
	}
	return data, statETag(fi), nil
}

// PutIfAbsent implements transfer.ObjectStore.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	return s.conditional(ctx, "create", key, data, func(cur string, exists bool) bool { return !exists })
}

// PutIfMatch implements transfer.ObjectStore.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	return s.conditional(ctx, "replace", key, data, func(cur string, exists bool) bool { return exists && cur == etag })
}

// conditional publishes data under key if ok accepts the current ETag,
// all under the key's lock. The data is written to a temp file before
// locking, to keep the lock short.
func (s *Store) conditional(ctx context.Context, op, key string, data []byte, ok func(cur string, exists bool) bool) (string, error) {
	p, err := s.path(key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tmp, etag, err := s.writeTempBytes(ctx, data)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", op, key, err)
	}
	defer os.Remove(tmp) // fails harmlessly once renamed

	l, err := s.lock(ctx, key)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", op, key, err)
	}
	defer l.unlock()
	cur, exists, err := currentETag(p)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", op, key, err)
	}
	if !ok(cur, exists) {
		if exists {
			return "", fmt.Errorf("%s %q: current ETag is %q: %w", op, key, cur, transfer.ErrPrecondition)
		}
		return "", fmt.Errorf("%s %q: object does not exist: %w", op, key, transfer.ErrPrecondition)
	}
	// Checked once more right before publishing: the lock is only taken
	// after the temp file was written, and the context may have ended.
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := s.publish(tmp, p); err != nil {
		return "", fmt.Errorf("%s %q: %w", op, key, err)
	}
	return etag, nil
}

func currentETag(p string) (etag string, exists bool, err error) {
	f, fi, err := openObject(p)
	if errors.Is(err, transfer.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	etag, err = etagOf(f, fi)
	if err != nil {
		return "", false, fsError(err)
	}
	return etag, true, nil
}
