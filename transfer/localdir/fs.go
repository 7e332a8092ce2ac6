package localdir

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/transfer"
)

// copyBuf is the buffer size for writing objects; large enough that a
// 64 MiB pack takes few system calls.
const copyBuf = 1 << 20

// writeTemp copies exactly size bytes from r into a new temp file, syncs
// and closes it, and returns its name.
func (s *Store) writeTemp(ctx context.Context, r io.Reader, size int64) (string, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(s.tmpDir(), hex.EncodeToString(rnd[:])+".tmp")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", s.missingOr(err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(name)
		}
	}()
	if size < 0 {
		return "", fmt.Errorf("negative size %d: %w", size, transfer.ErrPermanent)
	}
	buf := make([]byte, max(min(size, copyBuf), 512))
	n, err := io.CopyBuffer(writerOnly{f}, io.LimitReader(transfer.ContextReader(ctx, io.NopCloser(r)), size), buf)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return "", cerr
		}
		return "", fmt.Errorf("after %d of %d bytes: %w", n, size, fsError(err))
	}
	if n != size {
		return "", fmt.Errorf("source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err := f.Sync(); err != nil {
		return "", fsError(err)
	}
	if err := f.Close(); err != nil {
		return "", fsError(err)
	}
	ok = true
	return name, nil
}

// writeTempBytes writes data to a temp file and returns its name and the
// ETag the object will have once published.
func (s *Store) writeTempBytes(ctx context.Context, data []byte) (string, string, error) {
	tmp, err := s.writeTemp(ctx, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", "", err
	}
	if len(data) <= smallObject {
		return tmp, hashETag(data), nil
	}
	// Rename keeps size, mtime and inode, so the temp file's ETag is the
	// published object's.
	fi, err := os.Stat(tmp)
	if err != nil {
		os.Remove(tmp)
		return "", "", fsError(err)
	}
	return tmp, statETag(fi), nil
}

// publish renames tmp to p and makes the rename durable. A directory that
// a concurrent Delete removes between creating it and the rename is
// created again.
func (s *Store) publish(tmp, p string) error {
	dir := filepath.Dir(p)
	var err error
	for range 10 {
		if err = durable.MkdirAll(dir, 0o755); err != nil {
			if isNotDir(err) {
				return fmt.Errorf("a parent of the key is an object, not a prefix: %w", transfer.ErrPermanent)
			}
			return fsError(err)
		}
		err = os.Rename(tmp, p)
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("the key is a prefix of other objects: %w", transfer.ErrPermanent)
		}
		return fsError(err)
	}
	return fsError(durable.SyncDir(dir))
}

// openObject opens the regular file p without following a final symlink.
func openObject(p string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || isNotDir(err) {
			return nil, nil, transfer.ErrNotExist
		}
		return nil, nil, fsError(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fsError(err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, transfer.ErrNotExist // a prefix, not an object
	}
	return f, fi, nil
}

// etagOf returns the ETag of the open file f (see the package doc).
func etagOf(f *os.File, fi os.FileInfo) (string, error) {
	if fi.Size() > smallObject {
		return statETag(fi), nil
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, fi.Size()), b); err != nil {
		return "", err
	}
	return hashETag(b), nil
}

func hashETag(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

func statETag(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("s%x-m%x-i%x", fi.Size(), fi.ModTime().UnixNano(), ino)
}

// fsError classifies a file-system error: missing files become
// ErrNotExist, errors that retrying cannot fix become ErrPermanent with
// advice, and the rest stay as they are (transient).
func fsError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transfer.ErrNotExist), errors.Is(err, transfer.ErrPermanent):
		return err
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", transfer.ErrNotExist, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: check the owner and permissions of the store directory: %w", transfer.ErrPermanent, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: the store directory is on a read-only file system: %w", transfer.ErrPermanent, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: the store's file system is full: free space or move the store: %w", transfer.ErrPermanent, err)
	}
	return err
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// missingOr classifies an error creating a file in the store's own
// directories: if they are gone, so is the store (its directory vanished,
// or the file system holding it was unmounted), and nothing recreates it.
func (s *Store) missingOr(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local store %s: its directory or %s/ is gone (is its file system mounted?): %w", s.root, metaDir, transfer.ErrStoreMissing)
	}
	return fsError(err)
}

// writerOnly hides *os.File's ReadFrom, so io.CopyBuffer uses our buffer
// and checks the context between chunks.
type writerOnly struct{ io.Writer }
