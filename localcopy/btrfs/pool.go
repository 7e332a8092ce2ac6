package btrfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
)

// Pool file names under the state directory.
const (
	ImageName = "pool.img" // the sparse image holding the pool
	MountName = "pool"     // where it is mounted
)

// DefaultMountOptions are the pool's mount options (see doc.go for the
// measurements behind them): no access-time writes, free space tree,
// deleted data given back to the image's filesystem (the image is
// sparse), and 30 s commits (btrfs's default; fsync does not wait for
// them).
const DefaultMountOptions = "space_cache=v2,discard=async"

// Options configure Open.
type Options struct {
	// StateDir is portvol's state directory. When it is on btrfs the
	// volumes live in it; otherwise in a pool image under it.
	StateDir string
	// PoolSize is the pool image's size in bytes. 0 keeps an existing
	// pool's size and makes a new one as large as the free space of the
	// state directory's filesystem (the image is sparse: it takes what
	// is written). A size above the current one grows the pool; below it
	// is refused.
	PoolSize int64
	// Mkfs is the mkfs.btrfs program (default: found in PATH, /usr/sbin
	// or /sbin).
	Mkfs string
	// MountOptions replace DefaultMountOptions ("" keeps them).
	MountOptions string
	// ForcePool uses a pool image even when the state directory is on
	// btrfs (tests and benchmarks).
	ForcePool bool
}

var errNoLoop = fmt.Errorf("%w: no loop device", localcopy.ErrUnavailable)

// Pool is the loop-attached btrfs image portvol keeps when the state
// directory is not on btrfs.
type Pool struct {
	// Image is the image file, Mount its mount point, Device the loop
	// device serving it.
	Image, Mount, Device string
	// Size is the image's size in bytes.
	Size int64
	// Created is true when Open made the image.
	Created bool
	// Attached is true when Open attached the image (false: it found it
	// attached already), Mounted when Open mounted it.
	Attached, Mounted bool
	stateDir          string
}

// Available says why btrfs cannot be used on this kernel (nil if it can).
func Available() error {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("%w: reading /proc/filesystems: %w", localcopy.ErrUnavailable, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == "btrfs" {
			return nil
		}
	}
	return fmt.Errorf("%w: the kernel has no btrfs (not in /proc/filesystems): run modprobe btrfs on the host, or use --volume-fs directory", localcopy.ErrUnavailable)
}

// Open returns the btrfs copies for the state directory: in it when it
// is on btrfs, else in the pool image under it, which Open creates
// (mkfs.btrfs) on first use, attaches to a loop device and mounts —
// reusing an attachment or mount that survived a restart. Errors say
// what is missing; nothing half-made is left (a new image is formatted
// under a temporary name and renamed).
func Open(ctx context.Context, o Options) (*Copies, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(o.StateDir) {
		return nil, fmt.Errorf("state directory %q: %w: not absolute", o.StateDir, localcopy.ErrInvalid)
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(o.StateDir, &sf); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: o.StateDir, Err: err}
	}
	if sf.Type == unix.BTRFS_SUPER_MAGIC && !o.ForcePool {
		return &Copies{root: o.StateDir}, nil
	}
	p, err := openPool(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Copies{root: p.Mount, pool: p}, nil
}

func openPool(ctx context.Context, o Options) (*Pool, error) {
	p := &Pool{Image: filepath.Join(o.StateDir, ImageName), Mount: filepath.Join(o.StateDir, MountName), stateDir: o.StateDir}
	if dev, ok, err := mountedAt(p.Mount); err != nil {
		return nil, err
	} else if ok {
		// Mounted already (a restart of a host-run portvol).
		l, err := findLoop(p.Image)
		if err != nil {
			return nil, err
		}
		if l == nil || l.path != dev {
			if l != nil {
				l.Close()
			}
			return nil, fmt.Errorf("%w: %s is mounted from %s, which does not serve %s: unmount it", localcopy.ErrUnavailable, p.Mount, dev, p.Image)
		}
		defer l.Close()
		p.Device = dev
		return p, p.grow(l, o.PoolSize)
	}
	if _, err := os.Stat(p.Image); errors.Is(err, fs.ErrNotExist) {
		if err := p.create(ctx, o); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	l, err := findLoop(p.Image)
	if err != nil {
		return nil, err
	}
	if l == nil {
		if l, err = attachLoop(p.Image); err != nil {
			return nil, err
		}
		p.Attached = true
	}
	// Keep the device open until mounted: autoclear detaches it when the
	// last opener goes, and the mount becomes that opener.
	defer l.Close()
	p.Device = l.path
	if err := os.MkdirAll(p.Mount, 0o700); err != nil {
		return nil, err
	}
	opts := o.MountOptions
	if opts == "" {
		opts = DefaultMountOptions
	}
	if err := unix.Mount(l.path, p.Mount, "btrfs", unix.MS_NOATIME, opts); err != nil {
		hint := ""
		if errors.Is(err, unix.EPERM) {
			hint = " (mounting needs CAP_SYS_ADMIN)"
		}
		return nil, fmt.Errorf("%w: mounting %s (%s) on %s%s: %w", localcopy.ErrUnavailable, p.Image, l.path, p.Mount, hint, err)
	}
	p.Mounted = true
	if err := p.grow(l, o.PoolSize); err != nil {
		return nil, err
	}
	return p, nil
}

// create makes a new sparse image, formatted, under a temporary name.
func (p *Pool) create(ctx context.Context, o Options) error {
	size := o.PoolSize
	if size == 0 {
		var sf unix.Statfs_t
		if err := unix.Statfs(p.stateDir, &sf); err != nil {
			return &os.PathError{Op: "statfs", Path: p.stateDir, Err: err}
		}
		size = int64(sf.Bavail) * sf.Bsize &^ (1<<20 - 1)
	}
	if size < minPoolSize {
		return fmt.Errorf("%w: a pool of %s is too small: btrfs needs at least %s (free space in %s, or --pool-size)",
			localcopy.ErrNoSpace, localcopy.FormatSize(size), localcopy.FormatSize(minPoolSize), p.stateDir)
	}
	mkfs, err := findMkfs(o.Mkfs)
	if err != nil {
		return err
	}
	tmp := p.Image + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sizing the pool image: %w", err)
	}
	// single profiles: one device under us, so DUP metadata would only
	// double the metadata writes to the same disk.
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-f", "-L", "portvol", "-m", "single", "-d", "single", tmp).CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %s on the pool image: %w: %s", localcopy.ErrUnavailable, mkfs, err, bytes.TrimSpace(out))
	}
	if err := syncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := localcopy.MoveNoReplace(tmp, p.Image); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	p.Created = true
	return nil
}

const minPoolSize = 256 << 20

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func findMkfs(prog string) (string, error) {
	if prog != "" {
		if _, err := os.Stat(prog); err != nil {
			return "", fmt.Errorf("%w: mkfs program %s: %w", localcopy.ErrUnavailable, prog, err)
		}
		return prog, nil
	}
	if p, err := exec.LookPath("mkfs.btrfs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: mkfs.btrfs not found (install btrfs-progs, or use --volume-fs directory)", localcopy.ErrUnavailable)
}

// grow enlarges the image, the loop device and the filesystem to size.
func (p *Pool) grow(l *loopDevice, size int64) error {
	fi, err := os.Stat(p.Image)
	if err != nil {
		return err
	}
	p.Size = fi.Size()
	switch {
	case size == 0 || size == p.Size:
		return nil
	case size < p.Size:
		return fmt.Errorf("%w: --pool-size %s is smaller than the pool (%s): a pool cannot shrink", localcopy.ErrInvalid, localcopy.FormatSize(size), localcopy.FormatSize(p.Size))
	}
	if err := os.Truncate(p.Image, size); err != nil {
		return fmt.Errorf("growing the pool image: %w", err)
	}
	if err := l.setCapacity(); err != nil {
		return err
	}
	fd, err := openDir(p.Mount)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var a volArgs
	_ = setName(a.name[:], "1:max")
	if err := ioctl(fd, iocResize, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("growing the pool's filesystem: %w", err)
	}
	p.Size = size
	return nil
}

// Check refuses new copies when the disk under the pool image is nearly
// full: the image is sparse, and if the disk fills under it btrfs sees
// write errors and turns read-only for every volume.
func (p *Pool) Check() error {
	var sf unix.Statfs_t
	if err := unix.Statfs(p.stateDir, &sf); err != nil {
		return &os.PathError{Op: "statfs", Path: p.stateDir, Err: err}
	}
	free := int64(sf.Bavail) * sf.Bsize
	margin := max(int64(1)<<30, int64(sf.Blocks)*sf.Bsize/50)
	if free < margin {
		return fmt.Errorf("%w: the disk under the pool image (%s) has %s free: free space there before creating volumes", localcopy.ErrNoSpace, p.stateDir, localcopy.FormatSize(free&^(1<<20-1)))
	}
	return nil
}

// Space reports the pool filesystem's size and free bytes.
func (p *Pool) Space() (size, free int64, err error) {
	var sf unix.Statfs_t
	if err := unix.Statfs(p.Mount, &sf); err != nil {
		return 0, 0, &os.PathError{Op: "statfs", Path: p.Mount, Err: err}
	}
	return int64(sf.Blocks) * sf.Bsize, int64(sf.Bavail) * sf.Bsize, nil
}

// Unmount unmounts the pool (its loop device then detaches itself).
func (p *Pool) Unmount() error {
	if err := unix.Unmount(p.Mount, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting %s: %w", p.Mount, err)
	}
	return nil
}

// mountedAt reports whether a btrfs is mounted at dir, and from which
// device, reading /proc/self/mountinfo.
func mountedAt(dir string) (string, bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	dev, fstype, found := "", "", false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				fstype, dev, found = fields[i+1], unescapeMount(fields[i+2]), true // the last mount on dir wins
			}
		}
	}
	if !found {
		return "", false, nil
	}
	if fstype != "btrfs" {
		return "", false, fmt.Errorf("%w: %s is a %s mount, not the pool: unmount it", localcopy.ErrUnavailable, dir, fstype)
	}
	return dev, true, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
