package btrfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// copyTree copies the tree at src into the existing, empty directory dst
// as `cp -a` would: contents (holes kept; extents shared with FICLONE
// when both are on the same btrfs), owners, modes, times, extended
// attributes, symlinks, device nodes and hard links. dst's own metadata
// becomes src's.
func copyTree(ctx context.Context, src, dst string) error {
	links := map[uint64]string{} // source inode → first destination path
	buf := make([]byte, 1<<20)
	var walk func(s, d string) error
	walk = func(s, d string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(s)
		if err != nil {
			return err
		}
		for _, e := range entries {
			sp, dp := filepath.Join(s, e.Name()), filepath.Join(d, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(sp, &st); err != nil {
				return &os.PathError{Op: "lstat", Path: sp, Err: err}
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
				if first, ok := links[st.Ino]; ok {
					if err := os.Link(first, dp); err != nil {
						return err
					}
					continue
				}
				links[st.Ino] = dp
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if err := os.Mkdir(dp, 0o700); err != nil {
					return err
				}
				if err := walk(sp, dp); err != nil {
					return err
				}
			case unix.S_IFREG:
				if err := copyFile(sp, dp, buf); err != nil {
					return err
				}
			case unix.S_IFLNK:
				target, err := os.Readlink(sp)
				if err != nil {
					return err
				}
				if err := os.Symlink(target, dp); err != nil {
					return err
				}
			default: // devices, fifos, sockets
				if err := unix.Mknod(dp, st.Mode, int(st.Rdev)); err != nil {
					return &os.PathError{Op: "mknod", Path: dp, Err: err}
				}
			}
			if err := copyMeta(sp, dp, &st); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(src, dst); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	return copyMeta(src, dst, &st)
}

// copyFile copies a regular file: one FICLONE when the filesystem can
// share the extents, else its data segments (holes stay holes).
func copyFile(src, dst string, buf []byte) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		if _, err := io.CopyBuffer(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data), buf); err != nil {
			return fmt.Errorf("copying %s: %w", src, err)
		}
		off = hole
	}
	return out.Truncate(size)
}

// copyMeta gives dst src's owner, extended attributes, mode and times.
func copyMeta(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

func copyXattrs(src, dst string) error {
	n, err := unix.Llistxattr(src, nil)
	if err != nil || n == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	names := make([]byte, n)
	if n, err = unix.Llistxattr(src, names); err != nil {
		return err
	}
	for _, name := range splitNul(names[:n]) {
		sz, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return &os.PathError{Op: "getxattr " + name, Path: src, Err: err}
		}
		v := make([]byte, sz)
		if sz, err = unix.Lgetxattr(src, name, v); err != nil {
			return &os.PathError{Op: "getxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(dst, name, v[:sz], 0); err != nil {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}
