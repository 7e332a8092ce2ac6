package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// restorer carries one Restore.
type restorer struct {
	r     *Repo
	m     *Manifest
	paths []string
	stage int // staging root
	prog  *progress
	// noDirect is set once O_DIRECT writes turn out not to work here.
	noDirect atomic.Bool
	// inPlace: RestoreOptions.InPlace (small runs go through the cache).
	inPlace bool

	// Reuse of the copy the target already holds.
	old      int                    // target root, or -1
	oldPaths map[ID]localSource     // where each chunk of the previous snapshot lies locally
	cache    *statCache             // the stat cache, if it describes the previous snapshot
	linkCand map[int32]bool         // new file nodes whose old copy may be hardlinked
	usedIno  map[uint64]bool        // old inodes already linked
	linked   []bool                 // nodes taken whole from the old copy (no data, no metadata)
	write    [][]BlockRef           // in place: per node, the blocks that differ (nil: all)
	partial  []bool                 // in place: nodes whose Blocks hold only the spans that differ
	parentFD struct{ node, fd int } // one-entry cache of a staging directory descriptor
}

type localSource struct {
	path string
	off  int64
}

func (rs *restorer) close() {
	rs.closeStage()
	rs.closeOld()
}

func (rs *restorer) closeStage() {
	if rs.parentFD.fd > 0 {
		unix.Close(rs.parentFD.fd)
		rs.parentFD.fd = 0
	}
	if rs.stage >= 0 {
		unix.Close(rs.stage)
		rs.stage = -1
	}
}

func (rs *restorer) closeOld() {
	if rs.old >= 0 {
		unix.Close(rs.old)
		rs.old = -1
	}
}

// prepareReuse looks at what dir holds. Reuse is an optimisation: any
// problem here only means more is fetched.
func (rs *restorer) prepareReuse(ctx context.Context, volume, dir string, opts RestoreOptions) {
	cache := loadStatCache(opts.StatCache)
	prev := opts.Previous
	if prev == "" && cache != nil {
		prev = cache.Snapshot
	}
	if prev == "" || !ValidSnapshotID(prev) {
		return
	}
	oldM, err := rs.r.Load(ctx, volume, prev)
	if err != nil || oldM.BlockSize != rs.m.BlockSize {
		return
	}
	if rs.old, err = openDir(dir); err != nil {
		rs.old = -1
		return
	}
	if cache != nil && cache.Snapshot != oldM.ID {
		cache = nil
	}
	oldPaths := oldM.Paths()
	byPath := make(map[string]int32)
	rs.oldPaths = make(map[ID]localSource)
	for i := range oldM.Nodes {
		n := &oldM.Nodes[i]
		if n.Type != TypeFile {
			continue
		}
		byPath[oldPaths[i]] = int32(i)
		for _, b := range n.Blocks {
			id := oldM.Chunks[b.Chunk].ID
			if _, ok := rs.oldPaths[id]; !ok {
				rs.oldPaths[id] = localSource{oldPaths[i], int64(b.Index) * int64(rs.m.BlockSize)}
			}
		}
	}
	if cache == nil {
		return
	}
	// Whole files unchanged since the cache was written, with the same
	// content in the new snapshot, are candidates for hardlinking; build
	// checks each one again right before linking it.
	rs.cache = cache
	rs.linkCand = make(map[int32]bool)
	for i := range rs.m.Nodes {
		n := &rs.m.Nodes[i]
		if oi, ok := byPath[rs.paths[i]]; ok && n.Type == TypeFile && sameContent(rs.m, n, oldM, &oldM.Nodes[oi]) {
			rs.linkCand[int32(i)] = true
		}
	}
	rs.usedIno = make(map[uint64]bool)
}

// linkOld hardlinks the old copy of node i into the staging directory if
// it is still unchanged since the stat cache was written and has the
// metadata the new snapshot wants. Each old inode is used once, so files
// that are separate in the snapshot never end up sharing an inode.
func (rs *restorer) linkOld(i int, dfd int) bool {
	n := &rs.m.Nodes[i]
	fd, err := openBeneath(rs.old, rs.paths[i], unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || rs.usedIno[st.Ino] ||
		!rs.cache.unchanged(rs.paths[i], statEntryOf(&st), rs.r.racyWindow) || !sameMeta(n, &st, fd) {
		return false
	}
	if linkFD(fd, dfd, n.Name) != nil {
		return false
	}
	rs.usedIno[st.Ino] = true
	return true
}

func sameContent(m *Manifest, n *Node, om *Manifest, on *Node) bool {
	if n.Size != on.Size || len(n.Blocks) != len(on.Blocks) {
		return false
	}
	for j, b := range n.Blocks {
		ob := on.Blocks[j]
		if b.Index != ob.Index || m.Chunks[b.Chunk].ID != om.Chunks[ob.Chunk].ID {
			return false
		}
	}
	return true
}

func sameMeta(n *Node, st *unix.Stat_t, fd int) bool {
	if st.Mode&07777 != n.Mode || st.Uid != n.UID || st.Gid != n.GID || st.Mtim.Nano() != n.Mtime {
		return false
	}
	xs, err := readXattrs("", fd)
	return err == nil && xattrsEqual(xs, n.Xattrs)
}

// dirFD returns a descriptor of the staging directory that is node's
// parent.
func (rs *restorer) dirFD(parent int32) (int, error) {
	if parent == 0 {
		return rs.stage, nil
	}
	if rs.parentFD.fd > 0 && rs.parentFD.node == int(parent) {
		return rs.parentFD.fd, nil
	}
	fd, err := openBeneath(rs.stage, rs.paths[parent], unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	if rs.parentFD.fd > 0 {
		unix.Close(rs.parentFD.fd)
	}
	rs.parentFD.node, rs.parentFD.fd = int(parent), fd
	return fd, nil
}

// build creates every node in the staging directory: directories, files
// at their final size (so holes stay holes), links and special files.
// Contents and metadata follow.
func (rs *restorer) build(ctx context.Context) error {
	rs.linked = make([]bool, len(rs.m.Nodes))
	for i := 1; i < len(rs.m.Nodes); i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		n := &rs.m.Nodes[i]
		p := rs.paths[i]
		dfd, err := rs.dirFD(n.Parent)
		if err != nil {
			return err
		}
		switch n.Type {
		case TypeDir:
			err = unix.Mkdirat(dfd, n.Name, 0o700)
		case TypeFile:
			if rs.linkCand[int32(i)] && rs.linkOld(i, dfd) {
				rs.linked[i] = true
				rs.prog.reusedByte.Add(n.Size)
				break
			}
			err = createSized(dfd, n.Name, n.Size)
		case TypeHardlink:
			var tfd int
			tfd, err = openBeneath(rs.stage, rs.paths[n.Link], unix.O_PATH|unix.O_NOFOLLOW, 0)
			if err == nil {
				err = linkFD(tfd, dfd, n.Name)
				unix.Close(tfd)
			}
		case TypeSymlink:
			err = unix.Symlinkat(n.Target, dfd, n.Name)
		case TypeFIFO:
			err = unix.Mknodat(dfd, n.Name, unix.S_IFIFO|0o600, 0)
		case TypeCharDev:
			err = unix.Mknodat(dfd, n.Name, unix.S_IFCHR|0o600, int(n.Rdev))
		case TypeBlockDev:
			err = unix.Mknodat(dfd, n.Name, unix.S_IFBLK|0o600, int(n.Rdev))
		}
		if err != nil {
			return fmt.Errorf("creating %s %s: %w", n.Type, p, err)
		}
	}
	return nil
}

func createSized(dfd int, name string, size uint64) error {
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = unix.Ftruncate(fd, int64(size))
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// linkFD gives the file open as fd another name.
func linkFD(fd, dfd int, name string) error {
	err := unix.Linkat(fd, "", dfd, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
		// Without CAP_DAC_READ_SEARCH: go through the descriptor's magic link.
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	return err
}

// applyMetadata sets owner, mode, extended attributes and mtime, children
// before their directories (so directory mtimes stay as recorded), owner
// before mode (chown clears setuid bits) and mtime last.
func (rs *restorer) applyMetadata() error {
	for i := len(rs.m.Nodes) - 1; i >= 0; i-- {
		n := &rs.m.Nodes[i]
		if n.Type == TypeHardlink || rs.linked[i] {
			continue
		}
		dfd, name := rs.stage, "."
		if i > 0 {
			var err error
			if dfd, err = rs.dirFD(n.Parent); err != nil {
				return err
			}
			name = n.Name
		}
		if rs.write != nil && n.Type != TypeSymlink {
			if err := dropXattrs(procPath(dfd, name), n.Xattrs); err != nil {
				return fmt.Errorf("setting metadata of %s: %w", path.Clean(rs.paths[i]), err)
			}
		}
		if err := setMeta(dfd, name, n); err != nil {
			return fmt.Errorf("setting metadata of %s: %w", path.Clean(rs.paths[i]), err)
		}
	}
	return nil
}

func setMeta(dfd int, name string, n *Node) error {
	if err := unix.Fchownat(dfd, name, int(n.UID), int(n.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if n.Type != TypeSymlink {
		if err := unix.Fchmodat(dfd, name, n.Mode, 0); err != nil {
			return err
		}
	}
	if len(n.Xattrs) > 0 {
		if err := setXattrs(procPath(dfd, name), -1, n.Xattrs); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(n.Mtime)}
	return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// dropXattrs removes the extended attributes of path that keep lacks (an
// in-place restore updates files that may carry attributes the snapshot
// does not have).
func dropXattrs(path string, keep []Xattr) error {
	have, err := readXattrs(path, -1)
	if err != nil {
		return err
	}
	for _, x := range have {
		if !slices.ContainsFunc(keep, func(k Xattr) bool { return k.Name == x.Name }) {
			if err := unix.Lremovexattr(path, x.Name); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("removing extended attribute %s: %w", x.Name, err)
			}
		}
	}
	return nil
}
