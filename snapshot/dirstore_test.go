package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/portvol/portvol/transfer"
)

// dirStore keeps objects as files under a directory, for benchmarks and
// the memory test, which must not hold the store in RAM. It does not
// fsync (neither does the tar | zstd > file baseline). transfer/localdir
// replaces it once that lands.
type dirStore struct {
	root string
	mu   sync.Mutex // serialises the conditional writes
}

var _ transfer.ObjectStore = (*dirStore)(nil)

func (s *dirStore) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

func (s *dirStore) tmp() (*os.File, error) {
	var b [8]byte
	rand.Read(b[:])
	os.MkdirAll(filepath.Join(s.root, ".tmp"), 0o700)
	return os.Create(filepath.Join(s.root, ".tmp", hex.EncodeToString(b[:])))
}

func (s *dirStore) write(key string, r io.Reader, size int64, noReplace bool) error {
	f, err := s.tmp()
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("put %q: %d of %d bytes", key, n, size)
	}
	p := s.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	if noReplace {
		if err := os.Link(f.Name(), p); err != nil {
			if os.IsExist(err) {
				return fmt.Errorf("create %q: %w", key, transfer.ErrPrecondition)
			}
			return err
		}
		return nil
	}
	return os.Rename(f.Name(), p)
}

func notExist(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %q: %w", op, key, transfer.ErrNotExist)
	}
	return err
}

func (s *dirStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.write(key, r, size, false)
}

type fileReader struct {
	io.Reader
	f *os.File
}

func (f fileReader) Close() error { return f.f.Close() }

func (s *dirStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, notExist("get", key, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	return fileReader{r, f}, nil
}

func (s *dirStore) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return transfer.ObjectInfo{}, notExist("stat", key, err)
	}
	return transfer.ObjectInfo{Key: key, Size: fi.Size(), ETag: etag(fi), ModTime: fi.ModTime()}, nil
}

func etag(fi os.FileInfo) string { return fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano()) }

func (s *dirStore) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	var infos []transfer.ObjectInfo
	filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.Name() == ".tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, prefix) {
			fi, err := d.Info()
			if err == nil {
				infos = append(infos, transfer.ObjectInfo{Key: key, Size: fi.Size(), ETag: etag(fi), ModTime: fi.ModTime()})
			}
		}
		return nil
	})
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, oi := range infos {
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

func (s *dirStore) Delete(ctx context.Context, key string) error {
	if err := os.Remove(s.path(key)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (s *dirStore) Load(ctx context.Context, key string) ([]byte, string, error) {
	data, err := os.ReadFile(s.path(key))
	if err != nil {
		return nil, "", notExist("load", key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return nil, "", err
	}
	return data, etag(fi), nil
}

func (s *dirStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if err := s.write(key, bytes.NewReader(data), int64(len(data)), true); err != nil {
		return "", err
	}
	oi, err := s.Stat(ctx, key)
	return oi.ETag, err
}

func (s *dirStore) PutIfMatch(ctx context.Context, key string, data []byte, tag string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oi, err := s.Stat(ctx, key)
	if err != nil || oi.ETag != tag {
		return "", fmt.Errorf("replace %q: %w", key, transfer.ErrPrecondition)
	}
	if err := s.write(key, bytes.NewReader(data), int64(len(data)), false); err != nil {
		return "", err
	}
	oi, err = s.Stat(ctx, key)
	return oi.ETag, err
}
