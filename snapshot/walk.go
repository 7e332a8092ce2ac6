package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// tree is what a walk of a volume directory found.
type tree struct {
	nodes []Node
	paths []string
	stat  []statEntry // per node; set for TypeFile
	stats Stats
	live  bool // see walkTreeLive
}

// dropNodes removes the file nodes in gone (files that vanished before
// they could be read from a live directory) and the hard links to them,
// renumbering the rest; it returns read (a set of nodes) for the new
// node slice.
func (t *tree) dropNodes(gone, read map[*Node]bool) map[*Node]bool {
	newIdx := make([]int32, len(t.nodes))
	kept := int32(0)
	for i := range t.nodes {
		n := &t.nodes[i]
		if gone[n] || (n.Type == TypeHardlink && newIdx[n.Link] < 0) {
			newIdx[i] = -1
			if n.Type == TypeHardlink {
				t.stats.Hardlinks--
			} else {
				t.stats.Files--
				t.stats.Bytes -= n.Size
			}
			continue
		}
		newIdx[i] = kept
		kept++
	}
	nodes := make([]Node, 0, kept)
	paths := make([]string, 0, kept)
	stat := make([]statEntry, 0, kept)
	wasRead := make([]bool, 0, kept)
	for i := range t.nodes {
		if newIdx[i] < 0 {
			continue
		}
		n := t.nodes[i]
		if n.Parent >= 0 {
			n.Parent = newIdx[n.Parent]
		}
		if n.Type == TypeHardlink {
			n.Link = newIdx[n.Link]
		}
		nodes, paths, stat = append(nodes, n), append(paths, t.paths[i]), append(stat, t.stat[i])
		wasRead = append(wasRead, read[&t.nodes[i]])
	}
	t.nodes, t.paths, t.stat = nodes, paths, stat
	out := make(map[*Node]bool, len(read))
	for i, r := range wasRead {
		if r {
			out[&t.nodes[i]] = true
		}
	}
	return out
}

// walkTreeLive records the tree under the directory open as root. It
// opens every directory relative to its parent's descriptor with
// O_NOFOLLOW, so it never leaves the tree. Children of a directory follow
// it in name order; subdirectories are then walked in the same order.
// With live it tolerates entries that vanish or are replaced while it
// walks (CreateOptions.Live): they are left out, and a directory replaced
// is kept without its entries.
func walkTreeLive(ctx context.Context, root int, live bool) (*tree, error) {
	t := &tree{live: live}
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		return nil, err
	}
	xs, err := readXattrs("", root)
	if err != nil {
		return nil, fmt.Errorf(".: %w", err)
	}
	n := nodeFromStat(&st)
	n.Parent, n.Type, n.Xattrs = -1, TypeDir, xs
	t.add(n, ".", statEntry{})
	t.stats.Dirs++
	links := make(map[[2]uint64]int32)
	if err := t.walkDir(ctx, root, 0, links); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tree) add(n Node, path string, se statEntry) int32 {
	t.nodes = append(t.nodes, n)
	t.paths = append(t.paths, path)
	t.stat = append(t.stat, se)
	return int32(len(t.nodes) - 1)
}

func nodeFromStat(st *unix.Stat_t) Node {
	return Node{
		Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Inode: st.Ino,
	}
}

func (t *tree) walkDir(ctx context.Context, dirfd int, dir int32, links map[[2]uint64]int32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dirPath := t.paths[dir]
	names, err := readDirNames(dirfd)
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", dirPath, err)
	}
	slices.Sort(names)
	type sub struct {
		name string
		node int32
		ino  uint64
	}
	var subs []sub
	for _, name := range names {
		p := name
		if dir != 0 {
			p = dirPath + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed meanwhile
			}
			return fmt.Errorf("stat %s: %w", p, err)
		}
		n := nodeFromStat(&st)
		n.Parent, n.Name = dir, name
		var se statEntry
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = TypeDir
			t.stats.Dirs++
		case unix.S_IFREG:
			key := [2]uint64{st.Dev, st.Ino}
			if target, ok := links[key]; ok && st.Nlink > 1 {
				t.add(Node{Parent: dir, Name: name, Type: TypeHardlink, Link: target}, p, se)
				t.stats.Hardlinks++
				continue
			}
			n.Type, n.Size = TypeFile, uint64(st.Size)
			se = statEntryOf(&st)
			t.stats.Files++
			t.stats.Bytes += n.Size
		case unix.S_IFLNK:
			target, err := readlinkat(dirfd, name)
			if err != nil {
				if t.live && errors.Is(err, unix.ENOENT) {
					continue // removed meanwhile
				}
				return fmt.Errorf("readlink %s: %w", p, err)
			}
			n.Type, n.Target = TypeSymlink, target
			t.stats.Symlinks++
		case unix.S_IFIFO:
			n.Type = TypeFIFO
			t.stats.Others++
		case unix.S_IFCHR, unix.S_IFBLK:
			n.Type, n.Rdev = TypeCharDev, st.Rdev
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				n.Type = TypeBlockDev
			}
			t.stats.Others++
		default: // sockets live only as long as their process
			t.stats.Skipped++
			continue
		}
		xs, err := readXattrs(procPath(dirfd, name), -1)
		if err != nil {
			if t.live && errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		n.Xattrs = xs
		i := t.add(n, p, se)
		if n.Type == TypeFile && st.Nlink > 1 {
			links[[2]uint64{st.Dev, st.Ino}] = i
		}
		if n.Type == TypeDir {
			subs = append(subs, sub{name, i, st.Ino})
		}
	}
	for _, s := range subs {
		fd, err := unix.Openat(dirfd, s.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if t.live && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) {
				continue // removed or replaced meanwhile: kept empty
			}
			return fmt.Errorf("open %s: %w", t.paths[s.node], err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Ino != s.ino {
			unix.Close(fd)
			if t.live {
				continue // replaced meanwhile: kept empty
			}
			return fmt.Errorf("%s: replaced while walking: %w", t.paths[s.node], ErrChanged)
		}
		err = t.walkDir(ctx, fd, s.node, links)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dirfd int) ([]string, error) {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
