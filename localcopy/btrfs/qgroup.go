package btrfs

import (
	"encoding/binary"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// quotaStatus reads the filesystem's quota status item: on reports
// whether quotas are enabled, inconsistent whether the numbers need a
// rescan (or one runs).
func quotaStatus(mnt string) (on, inconsistent bool, err error) {
	fd, err := openDir(mnt)
	if err != nil {
		return false, false, err
	}
	defer unix.Close(fd)
	found := false
	err = treeSearch(fd, searchKey{
		treeID: quotaTreeID, maxObjectID: 0, minType: qgroupStatusKey, maxType: qgroupStatusKey,
		maxOffset: ^uint64(0), maxTransID: ^uint64(0),
	}, func(it searchItem) bool {
		if it.typ == qgroupStatusKey && len(it.data) >= 24 {
			flags := binary.LittleEndian.Uint64(it.data[16:])
			found = true
			inconsistent = flags&(qgroupStatusInc|qgroupStatusScan) != 0
		}
		return false
	})
	if errors.Is(err, unix.ENOENT) { // no quota tree
		return false, false, nil
	}
	if err != nil {
		return false, false, &os.PathError{Op: "read quota status", Path: mnt, Err: err}
	}
	return found, inconsistent, nil
}

// enableQuota turns quota groups on for the filesystem holding mnt. The
// kernel then scans the existing data in the background.
func enableQuota(mnt string) error {
	fd, err := openDir(mnt)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	a := quotaCtlArgs{cmd: quotaCtlEnable}
	if err := ioctl(fd, iocQuotaCtl, unsafe.Pointer(&a)); err != nil {
		return &os.PathError{Op: "enable quota", Path: mnt, Err: err}
	}
	return nil
}

// rescanQuota starts a rescan of the quota numbers (EINPROGRESS: one runs).
func rescanQuota(mnt string) error {
	fd, err := openDir(mnt)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var a quotaRescanArgs
	if err := ioctl(fd, iocQuotaRescan, unsafe.Pointer(&a)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return &os.PathError{Op: "rescan quota", Path: mnt, Err: err}
	}
	return nil
}

// setLimit limits the bytes subvolume p references (0 removes the limit).
func setLimit(p string, limit int64) error {
	fd, err := openDir(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	a := qgroupLimitArgs{} // qgroupid 0: the subvolume of fd
	if limit > 0 {
		a.flags, a.maxRfer = qgroupLimitMaxRfer, uint64(limit)
	} else { // all ones clears the limit
		a.flags, a.maxRfer = qgroupLimitMaxRfer, ^uint64(0)
	}
	if err := ioctl(fd, iocQgroupLimit, unsafe.Pointer(&a)); err != nil {
		return &os.PathError{Op: "set size limit", Path: p, Err: err}
	}
	return nil
}

// qgroupUsage reads subvolume treeID's referenced bytes and limit from
// the quota tree (as of the last transaction commit). ok is false when
// quotas are off or the subvolume has no quota group.
func qgroupUsage(mnt string, treeID uint64) (rfer, limit int64, ok bool, err error) {
	fd, err := openDir(mnt)
	if err != nil {
		return 0, 0, false, err
	}
	defer unix.Close(fd)
	err = treeSearch(fd, searchKey{
		treeID: quotaTreeID, minType: qgroupInfoKey, maxType: qgroupLimitKey,
		minOffset: treeID, maxOffset: treeID, maxTransID: ^uint64(0),
	}, func(it searchItem) bool {
		if it.offset != treeID || it.objectID != 0 {
			return true
		}
		switch {
		case it.typ == qgroupInfoKey && len(it.data) >= 16:
			rfer, ok = int64(binary.LittleEndian.Uint64(it.data[8:])), true
		case it.typ == qgroupLimitKey && len(it.data) >= 16:
			if binary.LittleEndian.Uint64(it.data[0:])&qgroupLimitMaxRfer != 0 {
				limit = int64(binary.LittleEndian.Uint64(it.data[8:]))
			}
		}
		return true
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, &os.PathError{Op: "read quota group", Path: mnt, Err: err}
	}
	return rfer, limit, ok, nil
}
