package localdir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

const (
	metaDir    = ".portvol" // the store's own files, never listed
	tmpSubdir  = "tmp"
	lockSubdir = "locks"

	// smallObject is the largest object whose ETag is a content hash.
	smallObject = 1 << 20

	// staleTemp is the age after which a temp file is a crashed writer's.
	staleTemp = time.Hour
)

// Store is an object store in a local (or NFS-mounted) directory. It is
// safe for concurrent use.
type Store struct {
	root string

	mu    sync.Mutex
	locks map[string]*keyLock // in-process half of the per-key lock
}

// New creates the store rooted at the absolute path root, or opens it if
// it exists: it creates the directory and the store's own files as needed.
// It is how a store is made (portvol init); to use a store that must
// already exist, call Open. Both remove temp files that crashed writers
// left more than an hour ago.
func New(root string) (*Store, error) {
	s, err := newStore(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{s.root, s.tmpDir(), s.lockDir()} {
		if err := durable.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("local store %s: %w", s.root, fsError(err))
		}
	}
	s.removeStaleTemps()
	return s, nil
}

// Open opens the existing store rooted at the absolute path root, creating
// nothing. A directory that does not exist, or that New never made a store
// (it lacks ROOT/.portvol: a mount point whose file system is not mounted,
// a mistyped path), fails with an error matching transfer.ErrStoreMissing.
func Open(root string) (*Store, error) {
	s, err := newStore(root)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(s.root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("local store directory %s does not exist: %w", s.root, transfer.ErrStoreMissing)
	case err != nil:
		return nil, fmt.Errorf("local store %s: %w", s.root, fsError(err))
	case !fi.IsDir():
		return nil, fmt.Errorf("local store %s is not a directory: %w", s.root, transfer.ErrStoreMissing)
	}
	for _, d := range []string{s.tmpDir(), s.lockDir()} {
		fi, err := os.Stat(d)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("directory %s holds no portvol store (it has no %s/%s): %w", s.root, metaDir, filepath.Base(d), transfer.ErrStoreMissing)
		}
		if err != nil {
			return nil, fmt.Errorf("local store %s: %w", s.root, fsError(err))
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("local store %s: %s is not a directory: %w", s.root, d, transfer.ErrPermanent)
		}
	}
	s.removeStaleTemps()
	return s, nil
}

func newStore(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("local store directory %q: must be an absolute path: %w", root, transfer.ErrPermanent)
	}
	return &Store{root: filepath.Clean(root), locks: make(map[string]*keyLock)}, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) tmpDir() string  { return filepath.Join(s.root, metaDir, tmpSubdir) }
func (s *Store) lockDir() string { return filepath.Join(s.root, metaDir, lockSubdir) }

// path checks key and returns its file name.
func (s *Store) path(key string) (string, error) {
	if err := transfer.CheckKey(key); err != nil {
		return "", err
	}
	if key == metaDir || strings.HasPrefix(key, metaDir+"/") {
		return "", fmt.Errorf("invalid object key %q: %q is reserved by the local store: %w", key, metaDir, transfer.ErrPermanent)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
}

// Put implements transfer.ObjectStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, r, size)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := s.publish(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

// Get implements transfer.ObjectStore.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, fi, err := openObject(p)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	off = min(max(off, 0), fi.Size())
	n := fi.Size() - off
	if length >= 0 {
		n = min(n, length)
	}
	return transfer.ContextReader(ctx, &sectionFile{r: io.NewSectionReader(f, off, n), f: f}), nil
}

type sectionFile struct {
	r *io.SectionReader
	f *os.File
}

func (s *sectionFile) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *sectionFile) Close() error               { return s.f.Close() }

// Stat implements transfer.ObjectStore.
func (s *Store) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return transfer.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return transfer.ObjectInfo{}, err
	}
	f, fi, err := openObject(p)
	if err != nil {
		return transfer.ObjectInfo{}, fmt.Errorf("stat %q: %w", key, err)
	}
	defer f.Close()
	etag, err := etagOf(f, fi)
	if err != nil {
		return transfer.ObjectInfo{}, fmt.Errorf("stat %q: %w", key, fsError(err))
	}
	return transfer.ObjectInfo{Key: key, Size: fi.Size(), ETag: etag, ModTime: fi.ModTime()}, nil
}

// Delete implements transfer.ObjectStore. It holds the key's lock, so it
// is ordered with conditional writes of the same key.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	l, err := s.lock(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	defer l.unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && !isNotDir(err) {
		return fmt.Errorf("delete %q: %w", key, fsError(err))
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil && !errors.Is(err, os.ErrNotExist) && !isNotDir(err) {
		return fmt.Errorf("delete %q: %w", key, fsError(err))
	}
	s.removeEmptyParents(filepath.Dir(p))
	l.removeFile()
	return nil
}

// removeEmptyParents removes dir and its parents up to the root while they
// are empty, so deleted prefixes do not leave directory trees behind. A
// concurrent Put that loses its directory creates it again.
func (s *Store) removeEmptyParents(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}
