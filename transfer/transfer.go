package transfer

import (
	"context"
	"io"
	"time"
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ETag    string // opaque; changes whenever the content changes
	ModTime time.Time
}

// ObjectStore is a flat key/value store of immutable-by-convention objects,
// with conditional writes for the few records that change (the volume head).
//
// Keys are slash-separated relative paths of [A-Za-z0-9._-] segments; no
// segment is empty, "." or "..". Every method may block on the network and
// honours ctx.
//
// Errors: a missing object is reported with an error that matches
// ErrNotExist; a failed condition with ErrPrecondition; a failure that
// retrying cannot fix (bad credentials, no permission, no such bucket) with
// ErrPermanent. Anything else may be transient.
type ObjectStore interface {
	// Put stores exactly size bytes read from r under key, replacing any
	// object there. Readers never see a partial object: after an error the
	// key holds either the old object or nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Get reads key from byte offset off. length < 0 reads to the end. A
	// range beyond the end is truncated to the object, as in HTTP.
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Stat returns the object's size and ETag.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexical key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// Load reads a small object whole, together with the ETag of exactly
	// the bytes returned, for a later PutIfMatch. An object of more than
	// limit bytes is not read (memory follows the bound, not the object):
	// Load fails with an error matching ErrTooLarge that names the key,
	// the object's size and limit.
	Load(ctx context.Context, key string, limit int64) (data []byte, etag string, err error)

	// PutIfAbsent creates key with data only if no object exists under it,
	// and returns the new ETag. If one exists it fails with ErrPrecondition.
	PutIfAbsent(ctx context.Context, key string, data []byte) (etag string, err error)

	// PutIfMatch replaces key with data only if its current ETag is etag,
	// and returns the new ETag. Otherwise, or if key does not exist, it
	// fails with ErrPrecondition.
	//
	// A conditional write retried after a lost response can fail with
	// ErrPrecondition although an earlier attempt was applied: callers that
	// retry re-read the record and compare it with what they wrote.
	PutIfMatch(ctx context.Context, key string, data []byte, etag string) (newETag string, err error)
}
