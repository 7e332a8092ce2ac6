package driver

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mounter is the kernel's mount table as the driver uses it. The real one
// is sysMounter; tests substitute one that injects faults or delays.
type mounter interface {
	// Bind bind-mounts directory src onto directory dst.
	Bind(src, dst string) error
	// Unmount removes the mount at dst.
	Unmount(dst string) error
	// Mounted reports whether something is mounted exactly at path (a
	// path that does not exist is not mounted).
	Mounted(path string) (bool, error)
}

type sysMounter struct{}

func (sysMounter) Bind(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", src, dst, err)
	}
	return nil
}

func (sysMounter) Unmount(dst string) error {
	err := unix.Unmount(dst, 0)
	if errors.Is(err, unix.EBUSY) {
		// Something on the host still has a file open there; the data
		// itself stays in the state directory, so detaching is safe.
		err = unix.Unmount(dst, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: not a mount point
		return fmt.Errorf("unmount %s: %w", dst, err)
	}
	return nil
}

func (sysMounter) Mounted(path string) (bool, error) {
	m, err := mountinfo.Mounted(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // unbind asks about mountpoints already removed
	}
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return m, nil
}

// sameDir reports whether a and b are the same directory (the bind mount at
// a shows b's inode).
func sameDir(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
