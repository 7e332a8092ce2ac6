package driver

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mounter is the kernel's mount table as the driver uses it. The real one
// is sysMounter; tests substitute one that injects faults or delays.
type mounter interface {
	// Bind bind-mounts directory src onto directory dst.
	Bind(src, dst string) error
	// Unmount removes the mount at dst.
	Unmount(dst string) error
	// Mounted reports whether something is mounted exactly at path,
	// according to /proc/self/mountinfo.
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
	points, err := mountPoints("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	return points[path], nil
}

// mountPoints returns the set of mount points listed in a mountinfo file.
func mountPoints(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	points := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		points[unescapeMountinfo(fields[4])] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return points, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
