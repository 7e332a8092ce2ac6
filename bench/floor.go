package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// readFloor is the least reading any tool must do for a snapshot after
// pgbench on pg-btrfs: the extents btrfs reports written since the base
// (what `btrfs subvolume find-new` lists), read cold. Measured twice:
// exactly those bytes, and rounded out to portvol's blocks (a changed
// 8 KiB page is half of a 16 KiB block whose other half must be read
// too, and lies elsewhere on the disk).
type readFloor struct {
	Run   int
	Align int64 // 0: the extents as btrfs lists them
	Bytes int64
	Reads int
	Wall  time.Duration
}

// changedExtents lists the extents of subvolume dir written after
// generation gen, by file (paths relative to dir), merged where they touch
// once rounded out to align. find-new lists the extents of its generation
// argument too, and those are in a snapshot created at gen: it is asked
// from gen+1, as portvol's change search does (localcopy/btrfs).
func changedExtents(ctx context.Context, r *runner, dir string, gen uint64, align int64) (map[string][][2]int64, error) {
	out, err := r.must(ctx, "/", nil, "btrfs", "subvolume", "find-new", dir, strconv.FormatUint(gen+1, 10))
	if err != nil {
		return nil, fmt.Errorf("btrfs subvolume find-new: %w: %s", err, out)
	}
	files := map[string][][2]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		// inode I file offset O len L disk start D offset X gen G flags F PATH
		f := strings.SplitN(sc.Text(), " ", 17)
		if len(f) < 17 || f[0] != "inode" || f[2] != "file" || f[5] != "len" {
			continue
		}
		off, err1 := strconv.ParseInt(f[4], 10, 64)
		n, err2 := strconv.ParseInt(f[6], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("btrfs subvolume find-new: cannot read %q", sc.Text())
		}
		if align > 0 {
			end := (off + n + align - 1) / align * align
			off = off / align * align
			n = end - off
		}
		files[f[16]] = append(files[f[16]], [2]int64{off, n})
	}
	for p, rs := range files {
		slices.SortFunc(rs, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
		merged := rs[:0]
		for _, x := range rs {
			if k := len(merged) - 1; k >= 0 && x[0] <= merged[k][0]+merged[k][1] {
				merged[k][1] = max(merged[k][0]+merged[k][1], x[0]+x[1]) - merged[k][0]
				continue
			}
			merged = append(merged, x)
		}
		files[p] = merged
	}
	return files, sc.Err()
}

// generation is the generation at which subvolume dir (a read-only
// snapshot) was created: what was written after it has a higher one.
func generation(ctx context.Context, r *runner, dir string) (uint64, error) {
	out, err := r.must(ctx, "/", nil, "btrfs", "subvolume", "show", dir)
	if err != nil {
		return 0, fmt.Errorf("btrfs subvolume show: %w: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "Gen at creation" {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("btrfs subvolume show %s: no \"Gen at creation\" in %q", dir, out)
}

// readChanged reads the ranges cold the quickest way found on this
// machine: every range advised to the kernel first (POSIX_FADV_WILLNEED,
// which queues the reads at once), then each read with pread in file
// order. Measured on this machine's disk (2026-12-07, 214 MB in 15 075
// extents after 15 s of pgbench): advised, 0.25-0.32 s, whether all at
// once or in a window of 4 to 128 MiB ahead; one pread after another
// without advice 1.41 s; four threads of preads 0.66 s; O_DIRECT with 32
// or 64 reads in flight 0.31 s; merging extents less than 64 KiB apart
// 0.90 s (526 MB read).
func readChanged(dir string, files map[string][][2]int64) (n int64, reads int, wall time.Duration, err error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	fds := make(map[string]*os.File, len(paths))
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	start := time.Now()
	for _, p := range paths {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			return 0, 0, 0, err
		}
		fds[p] = f
		for _, x := range files[p] {
			if err := unix.Fadvise(int(f.Fd()), x[0], x[1], unix.FADV_WILLNEED); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		for _, x := range files[p] {
			for off, end := x[0], x[0]+x[1]; off < end; {
				k, err := fds[p].ReadAt(buf[:min(int64(len(buf)), end-off)], off)
				n += int64(k)
				reads++
				off += int64(k)
				if errors.Is(err, io.EOF) {
					break // the file ends before the extent's rounded end
				}
				if err != nil {
					return 0, 0, 0, err
				}
			}
		}
	}
	return n, reads, time.Since(start), nil
}

// measureReadFloor measures the floor of the snapshot after pgbench on
// the pg-btrfs data directory: the changes since portvol's base.
func (b *bench) measureReadFloor(ctx context.Context, run int, data string) error {
	es, err := os.ReadDir(b.pool.bases())
	if err != nil {
		return err
	}
	base := ""
	for _, e := range es {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			base = filepath.Join(b.pool.bases(), e.Name())
			break
		}
	}
	if base == "" {
		return fmt.Errorf("no portvol base in %s to measure the changes against", b.pool.bases())
	}
	gen, err := generation(ctx, b.r, base)
	if err != nil {
		return err
	}
	for _, align := range []int64{0, 16 << 10} {
		files, err := changedExtents(ctx, b.r, data, gen, align)
		if err != nil {
			return err
		}
		settle()
		b.drop()
		n, reads, wall, err := readChanged(data, files)
		if err != nil {
			return fmt.Errorf("reading the changed extents: %w", err)
		}
		f := readFloor{Run: run, Align: align, Bytes: n, Reads: reads, Wall: wall}
		b.floors = append(b.floors, f)
		fmt.Printf("run %d  pg-btrfs floor: read the changed extents cold (rounded to %d bytes): %d MiB in %d reads, %.2fs\n",
			run, align, n>>20, reads, wall.Seconds())
	}
	return nil
}
