package localcopy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
)

// The filesystem steps both implementations share: durable directory
// creation, atomic swaps and renames. Exported for localcopy/btrfs.

// MkdirDurable creates dir and its missing parents durably.
func MkdirDurable(dir string) error { return durable.MkdirAll(dir, 0o755) }

// SyncDir fsyncs a directory so that entries created or renamed in it
// are durable.
func SyncDir(dir string) error { return durable.SyncDir(dir) }

// SwapIn puts src in place of dst atomically — an exchange when dst
// exists (src then holds the old dst), a rename that replaces nothing
// otherwise — and syncs the parent. If the sync fails the swap is undone.
func SwapIn(src, dst string) error {
	flags := uint(unix.RENAME_EXCHANGE)
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		flags = unix.RENAME_NOREPLACE
	}
	if err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, flags); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("cannot swap %s into %s: it is a mount point (unmount it first): %w", src, dst, err)
		}
		return fmt.Errorf("swapping %s into %s: %w", src, dst, err)
	}
	if err := SyncDir(filepath.Dir(dst)); err != nil {
		if flags == unix.RENAME_EXCHANGE {
			_ = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
		} else {
			_ = unix.Renameat2(unix.AT_FDCWD, dst, unix.AT_FDCWD, src, unix.RENAME_NOREPLACE)
		}
		return err
	}
	return nil
}

// MoveNoReplace renames src to dst, failing if dst exists, and syncs the
// parent directories.
func MoveNoReplace(src, dst string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("rename %s: %w", src, fs.ErrNotExist)
		}
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("rename %s: %s exists: %w", src, dst, fs.ErrExist)
		}
		return fmt.Errorf("rename %s to %s: %w", src, dst, err)
	}
	if err := SyncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	if filepath.Dir(src) != filepath.Dir(dst) {
		return SyncDir(filepath.Dir(src))
	}
	return nil
}
