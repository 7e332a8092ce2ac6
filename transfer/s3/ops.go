package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/portvol/portvol/transfer"
)

func (s *Store) name(key string) (string, error) {
	if err := transfer.CheckKey(key); err != nil {
		return "", err
	}
	return s.opts.Prefix + key, nil
}

// putOptions are the options of every upload: unsigned payload, no
// Content-MD5, no minio-go retries.
func (s *Store) putOptions(size int64) minio.PutObjectOptions {
	return minio.PutObjectOptions{
		DisableContentSha256: true,
		SendContentMd5:       false,
		DisableMultipart:     size <= s.opts.MaxSinglePut,
		PartSize:             uint64(s.opts.PartSize),
		NumThreads:           uint(s.opts.PartConcurrency),
		ContentType:          "application/octet-stream",
	}
}

// Put implements transfer.ObjectStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %q: negative size %d: %w", key, size, transfer.ErrPermanent)
	}
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	defer s.release()
	src := &sourceReader{r: r, left: size}
	var body io.Reader = src
	if ra, ok := r.(io.ReaderAt); ok && size > s.opts.MaxSinglePut {
		// Parts are read in parallel through ReadAt from the current offset.
		if sk, ok := r.(io.Seeker); ok {
			if off, err := sk.Seek(0, io.SeekCurrent); err == nil {
				body = io.NewSectionReader(ra, off, size)
			}
		}
	}
	_, err = s.client.PutObject(ctx, s.opts.Bucket, name, body, size, s.putOptions(size))
	short, left := src.detach()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("put %q: %w", key, context.Cause(ctx))
		}
		if short {
			return fmt.Errorf("put %q: source ended after %d of %d bytes: %w", key, size-left, size, transfer.ErrPermanent)
		}
		return s.translate("put", key, err)
	}
	return nil
}

// sourceReader passes on at most left bytes of the caller's source and
// notes a source that ends early, so that is reported as the caller's
// mistake, not a network fault.
//
// net/http may still read a request body after the request has failed
// (when the server answered before reading it all), while a retry is
// already rewinding the source. detach, called before Put returns, waits
// for a Read in progress and makes later Reads fail without touching the
// source.
type sourceReader struct {
	mu       sync.Mutex
	r        io.Reader
	left     int64
	short    bool
	detached bool
}

var errDetached = errors.New("request body read after the upload ended")

func (e *sourceReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.detached {
		return 0, errDetached
	}
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		e.short = true
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (e *sourceReader) detach() (short bool, left int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.detached = true
	return e.short, e.left
}

// Get implements transfer.ObjectStore.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	off = max(off, 0)
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, fmt.Errorf("get %q: %w", key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if err := s.acquire(ctx); err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	var opts minio.GetObjectOptions
	if off > 0 || length > 0 {
		end := int64(0) // SetRange(off, 0) asks for off to the end
		if length > 0 {
			end = off + length - 1
		}
		if err := opts.SetRange(off, end); err != nil {
			s.release()
			return nil, fmt.Errorf("get %q: %w: %w", key, err, transfer.ErrPermanent)
		}
	}
	body, _, _, err := s.core.GetObject(ctx, s.opts.Bucket, name, opts)
	if err != nil {
		s.release()
		var er minio.ErrorResponse
		if errors.As(err, &er) && er.Code == "InvalidRange" {
			// The range starts at or past the end; as in HTTP, that reads
			// nothing, provided the object exists.
			if _, serr := s.Stat(ctx, key); serr != nil {
				return nil, serr
			}
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, s.translate("get", key, err)
	}
	return &slotBody{ReadCloser: body, s: s}, nil
}

// slotBody releases the request slot when the caller closes the body.
type slotBody struct {
	io.ReadCloser
	s      *Store
	closed bool
}

func (b *slotBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.ReadCloser.Close()
	b.s.release()
	return err
}

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return transfer.ObjectInfo{}, err
	}
	if err := s.acquire(ctx); err != nil {
		return transfer.ObjectInfo{}, fmt.Errorf("stat %q: %w", key, err)
	}
	defer s.release()
	oi, err := s.client.StatObject(ctx, s.opts.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return transfer.ObjectInfo{}, s.translate("stat", key, err)
	}
	return transfer.ObjectInfo{Key: key, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}, nil
}

// List implements transfer.ObjectStore.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	if err := transfer.CheckPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.client.ListObjects(lctx, s.opts.Bucket, minio.ListObjectsOptions{Prefix: s.opts.Prefix + prefix, Recursive: true})
	defer func() {
		cancel()
		for range ch { // let the lister goroutine finish
		}
	}()
	for oi := range ch {
		if oi.Err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list %q: %w", prefix, context.Cause(ctx))
			}
			return s.translate("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.opts.Prefix)
		if transfer.CheckKey(key) != nil {
			continue // an object portvol did not write
		}
		if err := fn(transfer.ObjectInfo{Key: key, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// Delete implements transfer.ObjectStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	defer s.release()
	err = s.client.RemoveObject(ctx, s.opts.Bucket, name, minio.RemoveObjectOptions{})
	if err = s.translate("delete", key, err); errors.Is(err, transfer.ErrNotExist) {
		return nil
	}
	return err
}

// Load implements transfer.ObjectStore: one GET, whose ETag header
// belongs to exactly the bytes of its body.
func (s *Store) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, "", err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, "", fmt.Errorf("load %q: %w", key, err)
	}
	defer s.release()
	body, oi, _, err := s.core.GetObject(ctx, s.opts.Bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", s.translate("load", key, err)
	}
	defer body.Close()
	if oi.Size > limit {
		// Content-Length says so: close the body unread.
		return nil, "", transfer.TooLarge("load", key, oi.Size, limit)
	}
	// A body without a length (chunked) is cut off after limit+1 bytes.
	data, err := transfer.ReadBounded(body, "load", key, limit)
	if errors.Is(err, transfer.ErrTooLarge) {
		return nil, "", err
	}
	if err != nil {
		return nil, "", s.translate("load", key, errors.Unwrap(err))
	}
	return data, oi.ETag, nil
}

// PutIfAbsent implements transfer.ObjectStore with If-None-Match: *.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	opts := s.putOptions(int64(len(data)))
	opts.SetMatchETagExcept("*")
	return s.putConditional(ctx, "create", key, data, opts)
}

// PutIfMatch implements transfer.ObjectStore with If-Match.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if etag == "" || etag == "*" {
		return "", fmt.Errorf("replace %q: ETag %q: want the ETag of a version: %w", key, etag, transfer.ErrPrecondition)
	}
	opts := s.putOptions(int64(len(data)))
	opts.SetMatchETag(etag)
	newETag, err := s.putConditional(ctx, "replace", key, data, opts)
	if errors.Is(err, transfer.ErrNotExist) {
		return "", fmt.Errorf("replace %q: object does not exist: %w", key, transfer.ErrPrecondition)
	}
	return newETag, err
}

func (s *Store) putConditional(ctx context.Context, op, key string, data []byte, opts minio.PutObjectOptions) (string, error) {
	name, err := s.name(key)
	if err != nil {
		return "", err
	}
	if err := s.acquire(ctx); err != nil {
		return "", fmt.Errorf("%s %q: %w", op, key, err)
	}
	defer s.release()
	opts.DisableMultipart = true
	info, err := s.client.PutObject(ctx, s.opts.Bucket, name, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return "", s.translate(op, key, err)
	}
	if info.ETag == "" {
		return "", fmt.Errorf("%s %q: the server returned no ETag: conditional writes need an S3 service that supports them: %w", op, key, transfer.ErrPermanent)
	}
	return info.ETag, nil
}
