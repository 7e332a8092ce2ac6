package btrfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Loop device flags (include/uapi/linux/loop.h).
const (
	loFlagsAutoclear = 4
	loFlagsDirectIO  = 16
	loopBlockSize    = 4096
)

// loopDevice is an attached loop device, open.
type loopDevice struct {
	path string
	f    *os.File
}

func (l *loopDevice) Close() error { return l.f.Close() }

// sameFile reports whether loop device fd serves the file with stat st.
func loopServes(fd int, st *unix.Stat_t) (bool, error) {
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		if errors.Is(err, unix.ENXIO) { // not attached
			return false, nil
		}
		return false, err
	}
	// lo_device is the kernel's new_encode_dev of the backing file's
	// device; decode it to compare with stat's.
	d := info.Device
	major := (d & 0xfff00) >> 8
	minor := (d & 0xff) | ((d >> 12) & 0xfff00)
	return info.Inode == st.Ino && major == uint64(unix.Major(st.Dev)) && minor == uint64(unix.Minor(st.Dev)), nil
}

// ensureNode makes sure /dev/loopN exists: inside a container (the
// managed plugin) /dev holds only the nodes it was started with.
func ensureNode(n int) (string, error) {
	p := "/dev/loop" + strconv.Itoa(n)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n))
	if err != nil {
		return "", fmt.Errorf("loop device %d: %w", n, err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("loop device %d: unreadable device number %q", n, b)
	}
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("creating %s (the plugin needs CAP_MKNOD and access to loop devices): %w", p, err)
	}
	return p, nil
}

// findLoop returns the loop device already serving image, if any.
func findLoop(image string) (*loopDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: image, Err: err}
	}
	sys, _ := filepath.Glob("/sys/block/loop*")
	for _, s := range sys {
		if _, err := os.Stat(filepath.Join(s, "loop", "backing_file")); err != nil {
			continue // not attached
		}
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(s), "loop"))
		if err != nil {
			continue
		}
		p, err := ensureNode(n)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue // gone meanwhile, or not ours to open
		}
		ok, err := loopServes(int(f.Fd()), &st)
		if err == nil && ok {
			return &loopDevice{path: p, f: f}, nil
		}
		f.Close()
	}
	return nil, nil
}

// attachLoop attaches image to a free loop device with direct I/O (the
// pool's pages are cached once, by btrfs, not again for the image) and
// autoclear (the device goes away with its last user: the pool's mount).
// The device stays attached while the returned file is open.
func attachLoop(image string) (*loopDevice, error) {
	if err := ensureLoopControl(); err != nil {
		return nil, err
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: opening /dev/loop-control (the kernel needs the loop driver, and the managed plugin access to devices): %w", errNoLoop, err)
	}
	defer ctl.Close()
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	var last error
	for try := 0; try < 8; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("%w: no free loop device: %w", errNoLoop, err)
		}
		p, err := ensureNode(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoLoop, err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: opening %s: %w", errNoLoop, p, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Size: loopBlockSize}
		cfg.Info.Flags = loFlagsAutoclear | loFlagsDirectIO
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) {
			// The image's filesystem refuses direct I/O: attach buffered.
			cfg.Info.Flags = loFlagsAutoclear
			err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		}
		if err == nil {
			return &loopDevice{path: p, f: f}, nil
		}
		f.Close()
		last = err
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Duration(try+1) * 10 * time.Millisecond) // another process took it first
	}
	return nil, fmt.Errorf("%w: attaching %s: %w", errNoLoop, image, last)
}

// setCapacity makes the loop device see its image's new size.
func (l *loopDevice) setCapacity() error {
	if err := unix.IoctlSetInt(int(l.f.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("%s: new capacity: %w", l.path, err)
	}
	return nil
}

// ensureLoopControl makes /dev/loop-control inside a container that was
// not given it (the managed plugin lists no device, so that enabling it
// never fails on a host without loop devices: the error comes at start,
// with the reason).
func ensureLoopControl() error {
	const p = "/dev/loop-control"
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	b, err := os.ReadFile("/sys/class/misc/loop-control/dev")
	if err != nil {
		return fmt.Errorf("%w: no %s and no loop driver in /sys (modprobe loop on the host): %w", errNoLoop, p, err)
	}
	maj, min, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: unreadable device number of %s: %q", errNoLoop, p, b)
	}
	if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: creating %s: %w", errNoLoop, p, err)
	}
	return nil
}
