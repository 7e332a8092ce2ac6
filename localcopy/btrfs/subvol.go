package btrfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// openDir opens a directory for ioctls.
func openDir(p string) (int, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// isSubvolume reports whether p is the root of a btrfs subvolume.
func isSubvolume(p string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Ino != firstFreeObjID {
		return false, nil
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(p, &sf); err != nil {
		return false, &os.PathError{Op: "statfs", Path: p, Err: err}
	}
	return sf.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// createSubvolume creates subvolume p (its parent must exist).
func createSubvolume(p string) error {
	dfd, err := openDir(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := subvolCreate(dfd, filepath.Base(p)); err != nil {
		return &os.PathError{Op: "create subvolume", Path: p, Err: err}
	}
	return nil
}

// snapshot makes dst a snapshot of subvolume src.
func snapshot(src, dst string, readOnly bool) error {
	sfd, err := openDir(src)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := openDir(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := snapCreate(dfd, sfd, filepath.Base(dst), readOnly); err != nil {
		return &os.PathError{Op: "snapshot", Path: dst, Err: err}
	}
	return nil
}

// deleteSubvolume deletes subvolume p, and first the subvolumes nested in
// it (a container may make some: btrfs refuses to delete a subvolume that
// holds others). A missing p is not an error. A plain directory at p is
// removed as a tree.
func deleteSubvolume(p string) error {
	ok, err := isSubvolume(p)
	if err != nil {
		return err
	}
	if !ok {
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	err = destroy(p)
	if !errors.Is(err, unix.ENOTEMPTY) {
		return err
	}
	// Nested subvolumes: delete them depth first, then retry.
	var nested []string
	werr := filepath.WalkDir(p, func(q string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts cannot hide subvolumes we could delete anyway
		}
		if q != p && e.IsDir() {
			if info, ierr := e.Info(); ierr == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Ino == firstFreeObjID {
					nested = append(nested, q)
				}
			}
		}
		return nil
	})
	if werr != nil {
		return werr
	}
	for i := len(nested) - 1; i >= 0; i-- {
		if err := deleteSubvolume(nested[i]); err != nil {
			return err
		}
	}
	return destroy(p)
}

func destroy(p string) error {
	dfd, err := openDir(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := snapDestroy(dfd, filepath.Base(p)); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("delete subvolume %s: %w", p, unix.ENOTEMPTY)
		}
		return &os.PathError{Op: "delete subvolume", Path: p, Err: err}
	}
	return nil
}

// subvolume returns the tree id and creation transaction (otransid) of
// subvolume p.
func subvolume(p string) (treeID, otransid uint64, err error) {
	fd, err := openDir(p)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	s, err := getSubvolInfo(fd)
	if err != nil {
		return 0, 0, &os.PathError{Op: "subvolume info", Path: p, Err: err}
	}
	return s.treeID(), s.otransid(), nil
}

// setNoCOW sets the nodatacow attribute on directory p: files created in
// it afterwards inherit it.
func setNoCOW(p string) error {
	fd, err := openDir(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return &os.PathError{Op: "get attributes", Path: p, Err: err}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsNOCOWFL)); err != nil {
		return &os.PathError{Op: "set nodatacow", Path: p, Err: err}
	}
	return nil
}

// hasNoCOW reports whether directory p has the nodatacow attribute.
func hasNoCOW(p string) (bool, error) {
	fd, err := openDir(p)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &os.PathError{Op: "get attributes", Path: p, Err: err}
	}
	return flags&fsNOCOWFL != 0, nil
}

// syncFS commits the filesystem holding p.
func syncFS(p string) error {
	fd, err := openDir(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: p, Err: err}
	}
	return nil
}

// IsSubvolume reports whether p is the root of a btrfs subvolume (false,
// without an error, when p does not exist).
func IsSubvolume(p string) (bool, error) { return isSubvolume(p) }

// Snapshot makes dst, which must not exist, a snapshot of subvolume src:
// read-only, or writable for a restore in place that is swapped in
// afterwards (localcopy.SwapIn). dst's parent must be on the same btrfs
// filesystem.
func Snapshot(src, dst string, readOnly bool) error { return snapshot(src, dst, readOnly) }

// DeleteSubvolume deletes subvolume p with the subvolumes nested in it;
// a plain directory at p is removed as a tree, a missing p is no error.
func DeleteSubvolume(p string) error { return deleteSubvolume(p) }

// CreateSubvolume creates the empty subvolume p; its parent must exist.
func CreateSubvolume(p string) error { return createSubvolume(p) }
