package localdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// keyLock is the in-process half of a key's lock: NFS maps flock to POSIX
// locks, which do not exclude two holders in one process.
type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int           // guarded by Store.mu
}

// heldLock is a key locked in this process and, through its lock file,
// between processes.
type heldLock struct {
	s    *Store
	key  string
	kl   *keyLock
	f    *os.File
	path string
}

// lock takes the key's lock, waiting until it is free or ctx is done.
func (s *Store) lock(ctx context.Context, key string) (*heldLock, error) {
	s.mu.Lock()
	kl := s.locks[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		s.locks[key] = kl
	}
	kl.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		kl.refs--
		if kl.refs == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
	select {
	case kl.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	h := &heldLock{s: s, key: key, kl: kl, path: s.lockPath(key)}
	f, err := flockFile(ctx, h.path)
	if errors.Is(err, os.ErrNotExist) {
		err = s.missingOr(err)
	}
	if err != nil {
		<-kl.ch
		release()
		return nil, err
	}
	h.f = f
	return h, nil
}

func (s *Store) lockPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.lockDir(), hex.EncodeToString(sum[:16])+".lock")
}

// unlock releases the file lock and then the in-process lock.
func (h *heldLock) unlock() {
	_ = syscall.Flock(int(h.f.Fd()), syscall.LOCK_UN)
	h.f.Close()
	<-h.kl.ch
	h.s.mu.Lock()
	h.kl.refs--
	if h.kl.refs == 0 {
		delete(h.s.locks, h.key)
	}
	h.s.mu.Unlock()
}

// removeFile removes the lock file while it is held (after Delete), so lock
// files do not pile up for deleted keys. Waiters that locked the removed
// file notice and lock again.
func (h *heldLock) removeFile() { _ = os.Remove(h.path) }

// flockFile opens path and takes an exclusive flock on it, polling so that
// ctx can interrupt the wait. It retries when the file it locked was
// removed or replaced meanwhile.
func flockFile(ctx context.Context, path string) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrNotExist) {
			return nil, err // the lock directory is gone: see Store.missingOr
		}
		if err != nil {
			return nil, fmt.Errorf("lock file: %w", fsError(err))
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 50*time.Millisecond)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock file %s: %w", path, fsError(err))
		}
		if sameFile(f, path) {
			return f, nil
		}
		f.Close() // locked a file that Delete removed; lock the new one
	}
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}
