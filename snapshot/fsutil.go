package snapshot

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// All file access below a volume root goes through descriptors: openat2
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or *at calls on a directory
// descriptor with a single path component, so a symlink planted in the
// tree (even while we work) can never lead outside it.

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

func openBeneath(root int, rel string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveFlags}
	for {
		fd, err := unix.Openat2(root, rel, &how)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: rel, Err: err}
		}
		return fd, nil
	}
}

func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// procPath names the entry name in the directory open as dirfd, for the
// path-based l*xattr calls: the magic link pins the directory, and the
// last component is not followed.
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

func xattrUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// readXattrs returns the extended attributes of path (not following a
// final symlink), sorted by name; fd >= 0 reads those of that descriptor.
func readXattrs(path string, fd int) ([]Xattr, error) {
	list := func(buf []byte) (int, error) {
		if fd >= 0 {
			return unix.Flistxattr(fd, buf)
		}
		return unix.Llistxattr(path, buf)
	}
	get := func(name string, buf []byte) (int, error) {
		if fd >= 0 {
			return unix.Fgetxattr(fd, name, buf)
		}
		return unix.Lgetxattr(path, name, buf)
	}
	var names []byte
	for {
		n, err := list(nil)
		if xattrUnsupported(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing extended attributes: %w", err)
		}
		if n == 0 {
			return nil, nil
		}
		names = make([]byte, n)
		n, err = list(names)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing extended attributes: %w", err)
		}
		names = names[:n]
		break
	}
	var out []Xattr
	for _, name := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		for {
			n, err := get(name, nil)
			if err == unix.ENODATA {
				break // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("reading extended attribute %s: %w", name, err)
			}
			val := make([]byte, n)
			n, err = get(name, val)
			if err == unix.ERANGE {
				continue
			}
			if err == unix.ENODATA {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading extended attribute %s: %w", name, err)
			}
			out = append(out, Xattr{Name: name, Value: val[:n]})
			break
		}
	}
	slices.SortFunc(out, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func setXattrs(path string, fd int, xs []Xattr) error {
	for _, x := range xs {
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, x.Name, x.Value, 0)
		} else {
			err = unix.Lsetxattr(path, x.Name, x.Value, 0)
		}
		if err != nil {
			return fmt.Errorf("setting extended attribute %s: %w", x.Name, err)
		}
	}
	return nil
}

func xattrsEqual(a, b []Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y Xattr) bool { return x.Name == y.Name && string(x.Value) == string(y.Value) })
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 64 {
		var acc uint64
		for i := 0; i < 64; i += 8 {
			acc |= uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
				uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
		}
		if acc != 0 {
			return false
		}
		b = b[64:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// preadFull reads len(buf) bytes at off; past the end of the file (which
// shrank) it fills zeros.
func preadFull(fd int, buf []byte, off int64) error {
	done := 0
	for done < len(buf) {
		n, err := unix.Pread(fd, buf[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			clear(buf[done:])
			return nil
		}
		done += n
	}
	return nil
}

const (
	// dioAlign is the alignment O_DIRECT writes keep in memory, file
	// offset and length: a page, which satisfies every common block
	// device (logical blocks of 512 or 4096 bytes).
	dioAlign = 4096
)

// alignedBuf returns n bytes that start on a dioAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+dioAlign)
	skip := (dioAlign - int(uintptr(unsafe.Pointer(&b[0]))%dioAlign)) % dioAlign
	return b[skip : skip+n : skip+n]
}

func isAligned(b []byte) bool {
	return uintptr(unsafe.Pointer(&b[0]))%dioAlign == 0
}

// dataExtents lists the runs of blocks (first, last, inclusive) of the
// first size bytes of fd that contain data according to
// SEEK_DATA/SEEK_HOLE; blocks wholly inside holes are left out without
// being read. Runs, not blocks: a list of every block of a large file
// would be garbage as large as its chunk list.
func dataExtents(fd int, size int64, bs int) ([][2]uint64, error) {
	var out [][2]uint64
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			if err == unix.EINVAL || err == unix.EOPNOTSUPP {
				data = off // no hole support: everything is data
			} else {
				return nil, err
			}
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		first, last := uint64(data)/uint64(bs), uint64(hole-1)/uint64(bs)
		if n := len(out); n > 0 && out[n-1][1] >= first {
			first = out[n-1][1] + 1
		}
		if first <= last {
			if n := len(out); n > 0 && out[n-1][1]+1 == first {
				out[n-1][1] = last
			} else {
				out = append(out, [2]uint64{first, last})
			}
		}
		if hole <= off { // defensive: never loop forever
			break
		}
		off = hole
	}
	return out, nil
}
