package transfer

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// TooLarge is the error for an object under key that is larger than
// limit bytes; size < 0 means its size is unknown (more than limit).
func TooLarge(op, key string, size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%s %q: object has more than the %d bytes this object may have: %w", op, key, limit, ErrTooLarge)
	}
	return fmt.Errorf("%s %q: object of %d bytes exceeds the %d bytes this object may have: %w", op, key, size, limit, ErrTooLarge)
}

// ReadAll reads the whole object key, which may be at most limit bytes,
// with one ranged Get of limit+1 bytes: a larger object fails with an error
// matching ErrTooLarge after at most limit+1 bytes were read, so memory
// follows the bound, never the object. It is for immutable objects of
// bounded size (manifests, indexes, records copied to the trash); records
// written conditionally are read with Load, which also returns the ETag.
func ReadAll(ctx context.Context, store ObjectStore, key string, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("read %q: negative bound %d: %w", key, limit, ErrPermanent)
	}
	rc, err := store.Get(ctx, key, 0, limit+1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return ReadBounded(rc, "read", key, limit)
}

// ReadBounded reads r to its end, failing with an error matching
// ErrTooLarge (naming op and key) as soon as it yields more than limit
// bytes. Stores use it for the bodies their Load reads.
func ReadBounded(r io.Reader, op, key string, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	// Small records are the common case: start small, grow as read.
	buf.Grow(int(min(limit+1, 64<<10)))
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", op, key, err)
	}
	if n > limit {
		return nil, TooLarge(op, key, -1, limit)
	}
	return buf.Bytes(), nil
}
