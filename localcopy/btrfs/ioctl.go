package btrfs

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctls and structures of the kernel's include/uapi/linux/btrfs.h
// and btrfs_tree.h that portvol uses, in Go: the plugin is a static
// binary (CGO_ENABLED=0), and one ioctl per operation beats starting the
// btrfs program and parsing its output.
const (
	iocSnapCreateV2  = 0x50009417 // _IOW(0x94, 23, btrfs_ioctl_vol_args_v2)
	iocSubvolCreate  = 0x5000940e // _IOW(0x94, 14, btrfs_ioctl_vol_args)
	iocSnapDestroy   = 0x5000940f // _IOW(0x94, 15, btrfs_ioctl_vol_args)
	iocTreeSearch    = 0xd0009411 // _IOWR(0x94, 17, btrfs_ioctl_search_args)
	iocInoLookup     = 0xd0009412 // _IOWR(0x94, 18, btrfs_ioctl_ino_lookup_args)
	iocGetSubvolInfo = 0x81f8943c // _IOR(0x94, 60, btrfs_ioctl_get_subvol_info_args)
	iocQuotaCtl      = 0xc0109428 // _IOWR(0x94, 40, btrfs_ioctl_quota_ctl_args)
	iocQgroupLimit   = 0x8030942b // _IOR(0x94, 43, btrfs_ioctl_qgroup_limit_args)
	iocQuotaRescan   = 0x4040942c // _IOW(0x94, 44, btrfs_ioctl_quota_rescan_args)
	iocResize        = 0x50009403 // _IOW(0x94, 3, btrfs_ioctl_vol_args)
	iocSync          = 0x9408     // _IO(0x94, 8)
	iocFSInfo        = 0x8400941f // _IOR(0x94, 31, btrfs_ioctl_fs_info_args)

	subvolRdonly = 1 << 1 // BTRFS_SUBVOL_RDONLY

	quotaCtlEnable = 1 // BTRFS_QUOTA_CTL_ENABLE

	qgroupLimitMaxRfer = 1 << 0 // BTRFS_QGROUP_LIMIT_MAX_RFER

	// Tree ids and item types (btrfs_tree.h).
	quotaTreeID      = 8
	firstFreeObjID   = 256 // BTRFS_FIRST_FREE_OBJECTID: a subvolume's root directory inode
	inodeItemKey     = 1
	extentDataKey    = 108
	qgroupStatusKey  = 240
	qgroupInfoKey    = 242
	qgroupLimitKey   = 244
	qgroupStatusInc  = 1 << 2 // BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT
	qgroupStatusScan = 1 << 1 // BTRFS_QGROUP_STATUS_FLAG_RESCAN

	fsNOCOWFL = 0x00800000 // FS_NOCOW_FL (linux/fs.h)

	subvolNameMax = 4039
	pathNameMax   = 4087
)

// volArgs is struct btrfs_ioctl_vol_args.
type volArgs struct {
	fd   int64
	name [pathNameMax + 1]byte
}

// volArgsV2 is struct btrfs_ioctl_vol_args_v2.
type volArgsV2 struct {
	fd      int64
	transid uint64
	flags   uint64
	unused  [4]uint64
	name    [subvolNameMax + 1]byte
}

// searchKey is struct btrfs_ioctl_search_key.
type searchKey struct {
	treeID                   uint64
	minObjectID, maxObjectID uint64
	minOffset, maxOffset     uint64
	minTransID, maxTransID   uint64
	minType, maxType         uint32
	nrItems                  uint32
	unused                   uint32
	unused1                  [4]uint64
}

// searchArgs is struct btrfs_ioctl_search_args.
type searchArgs struct {
	key searchKey
	buf [4096 - unsafe.Sizeof(searchKey{})]byte
}

// inoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type inoLookupArgs struct {
	treeID   uint64
	objectID uint64
	name     [4080]byte
}

// subvolInfo is struct btrfs_ioctl_get_subvol_info_args, read as bytes
// (its timespecs make Go's layout differ); the offsets are the header's.
type subvolInfo [504]byte

func (s *subvolInfo) treeID() uint64   { return binary.LittleEndian.Uint64(s[0:]) }
func (s *subvolInfo) otransid() uint64 { return binary.LittleEndian.Uint64(s[352:]) }
func (s *subvolInfo) ctransid() uint64 { return binary.LittleEndian.Uint64(s[344:]) }
func (s *subvolInfo) flags() uint64    { return binary.LittleEndian.Uint64(s[288:]) }
func (s *subvolInfo) uuid() [16]byte   { return [16]byte(s[296:312]) }
func (s *subvolInfo) parentUUID() [16]byte {
	return [16]byte(s[312:328])
}

// fsInfo is struct btrfs_ioctl_fs_info_args; the filesystem's fsid is at
// offset 16.
type fsInfo [1024]byte

func getFSID(fd int) ([16]byte, error) {
	var a fsInfo
	if err := ioctl(fd, iocFSInfo, unsafe.Pointer(&a)); err != nil {
		return [16]byte{}, err
	}
	return [16]byte(a[16:32]), nil
}

type quotaCtlArgs struct{ cmd, status uint64 }

type qgroupLimitArgs struct {
	qgroupID                                  uint64
	flags, maxRfer, maxExcl, rsvRfer, rsvExcl uint64
}

type quotaRescanArgs struct {
	flags, progress uint64
	reserved        [6]uint64
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

func setName(dst []byte, name string) error {
	if len(name) >= len(dst) || len(name) == 0 {
		return fmt.Errorf("name %q: length %d out of range", name, len(name))
	}
	copy(dst, name)
	return nil
}

// subvolCreate creates subvolume name in directory dirfd.
func subvolCreate(dirfd int, name string) error {
	var a volArgs
	if err := setName(a.name[:], name); err != nil {
		return err
	}
	return ioctl(dirfd, iocSubvolCreate, unsafe.Pointer(&a))
}

// snapCreate snapshots the subvolume open as srcfd to name in dirfd.
func snapCreate(dirfd, srcfd int, name string, readOnly bool) error {
	a := volArgsV2{fd: int64(srcfd)}
	if readOnly {
		a.flags = subvolRdonly
	}
	if err := setName(a.name[:], name); err != nil {
		return err
	}
	return ioctl(dirfd, iocSnapCreateV2, unsafe.Pointer(&a))
}

// snapDestroy deletes subvolume name in dirfd (read-only or not).
func snapDestroy(dirfd int, name string) error {
	var a volArgs
	if err := setName(a.name[:], name); err != nil {
		return err
	}
	return ioctl(dirfd, iocSnapDestroy, unsafe.Pointer(&a))
}

func getSubvolInfo(fd int) (*subvolInfo, error) {
	var s subvolInfo
	if err := ioctl(fd, iocGetSubvolInfo, unsafe.Pointer(&s)); err != nil {
		return nil, err
	}
	return &s, nil
}

// inoLookup returns the path of inode ino in tree treeID, relative to
// that subvolume's root ("" for the root itself).
func inoLookup(fd int, treeID, ino uint64) (string, error) {
	a := inoLookupArgs{treeID: treeID, objectID: ino}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&a)); err != nil {
		return "", err
	}
	n := 0
	for n < len(a.name) && a.name[n] != 0 {
		n++
	}
	p := string(a.name[:n])
	// The kernel ends directory paths with '/'.
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p, nil
}

// searchItem is one item a tree search returned.
type searchItem struct {
	transID  uint64
	objectID uint64
	offset   uint64
	typ      uint32
	data     []byte // valid until the next search call
}

// treeSearch calls fn for every item in [min, max] of tree key.treeID
// (0: the tree of fd's subvolume), in key order, with transid ≥
// key.minTransID at the metadata block level (a coarse filter: callers
// check the item's own generation). fn returning false stops the search.
func treeSearch(fd int, key searchKey, fn func(searchItem) bool) error {
	var a searchArgs
	a.key = key
	for {
		a.key.nrItems = 4096
		if err := ioctl(fd, iocTreeSearch, unsafe.Pointer(&a)); err != nil {
			return err
		}
		n := a.key.nrItems
		if n == 0 {
			return nil
		}
		off := 0
		var last searchItem
		for i := uint32(0); i < n; i++ {
			if off+32 > len(a.buf) {
				return fmt.Errorf("tree search: item header beyond the buffer")
			}
			h := a.buf[off:]
			it := searchItem{
				transID:  binary.LittleEndian.Uint64(h[0:]),
				objectID: binary.LittleEndian.Uint64(h[8:]),
				offset:   binary.LittleEndian.Uint64(h[16:]),
				typ:      binary.LittleEndian.Uint32(h[24:]),
			}
			l := int(binary.LittleEndian.Uint32(h[28:]))
			off += 32
			if off+l > len(a.buf) {
				return fmt.Errorf("tree search: item data beyond the buffer")
			}
			it.data = a.buf[off : off+l]
			off += l
			if !fn(it) {
				return nil
			}
			last = it
		}
		// Continue after the last key: (objectid, type, offset) + 1.
		switch {
		case last.offset < ^uint64(0):
			a.key.minObjectID, a.key.minType, a.key.minOffset = last.objectID, last.typ, last.offset+1
		case last.typ < 255:
			a.key.minObjectID, a.key.minType, a.key.minOffset = last.objectID, last.typ+1, 0
		case last.objectID < ^uint64(0):
			a.key.minObjectID, a.key.minType, a.key.minOffset = last.objectID+1, 0, 0
		default:
			return nil
		}
		if keyAfter(a.key.minObjectID, a.key.minType, a.key.minOffset, key.maxObjectID, key.maxType, key.maxOffset) {
			return nil
		}
	}
}

func keyAfter(o1 uint64, t1 uint32, off1 uint64, o2 uint64, t2 uint32, off2 uint64) bool {
	if o1 != o2 {
		return o1 > o2
	}
	if t1 != t2 {
		return t1 > t2
	}
	return off1 > off2
}
