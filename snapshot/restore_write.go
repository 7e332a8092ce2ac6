package snapshot

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sys/unix"
)

// Restored data is written in large runs, whatever the data: adjacent
// chunks of one file are gathered in a buffer and written with one pwrite
// (O_DIRECT where the filesystem allows), and a gap of up to holeFill
// bytes of hole between two chunks is written as zeros rather than split
// the run. Longer zero runs stay holes. The measurements behind both
// numbers are in doc.go ("Restore").
//
// A run shorter than minDirect goes through the page cache, and its
// writeback is left to the final syncfs; longer runs are written with
// O_DIRECT. An O_DIRECT write waits for the device, so short ones cost a
// round trip each, one worker at a time:
//   - In place (single changed 16 KiB blocks; bench/handoffprof,
//     PostgreSQL 1.8 GB after pgbench -c 2 -t 2000): 5167 writes of
//     24 KiB on average, 0.57 ms each with O_DIRECT; the restore took
//     0.77–0.93 s, through the cache 0.45–0.52 s.
//   - Cold, and onto the previous copy (PostgreSQL pgbench -s 50, 1.35 GB
//     written, 15 s of pgbench, a 2-core AMD EPYC VM whose virtio disk
//     takes a kick per direct write; 2026-12-07): a cold restore made 24k
//     writes, 12k of them under 64 KiB, and took 3.0–3.75 s with O_DIRECT
//     for every run, 1.75–2.1 s with this rule (the shortest direct run
//     at 256 KiB: 1.8–1.9 s; at 4 MiB: 1.9–2.0 s). Onto the previous copy,
//     2.5–2.65 s against 2.1–2.4 s.
const (
	runBufSize = 4 << 20
	holeFill   = 128 << 10
	minDirect  = 1 << 20
)

// chunkWriter writes verified chunk data to every place it belongs.
type chunkWriter struct {
	rs    *restorer
	start []int32
	dests []dest
	isl   *islands // see restore_islands.go; nil: none
	// later marks the chunks a later phase writes (the fetched ones,
	// while the local copy runs; nil otherwise): a run may write zeros
	// over their blocks rather than split (see zeroGap).
	later []bool
}

// runWriter gathers one run of adjacent bytes of one file; one per
// goroutine.
type runWriter struct {
	w    *chunkWriter
	buf  []byte // aligned, runBufSize
	node int32
	off  int64 // file offset of buf[0]
	n    int   // bytes in buf
}

func (w *chunkWriter) newRun() *runWriter {
	return &runWriter{w: w, buf: alignedBuf(runBufSize), node: -1}
}

// write puts chunk c's plaintext at every place it belongs.
func (w *chunkWriter) write(run *runWriter, c uint32, data []byte) error {
	bs := int64(w.rs.m.BlockSize)
	for _, d := range w.dests[w.start[c]:w.start[c+1]] {
		if err := run.put(d.node, int64(d.index)*bs, data); err != nil {
			return err
		}
		w.rs.prog.done.Add(uint64(len(data)))
	}
	return nil
}

func (run *runWriter) put(node int32, off int64, data []byte) error {
	end := run.off + int64(run.n)
	gap := off - end
	split := node != run.node || gap < 0 || gap > holeFill || run.n+int(gap)+len(data) > len(run.buf)
	switch {
	case split:
	case gap == 0:
	case run.w.zeroGap(node, end, off):
		clear(run.buf[run.n : run.n+int(gap)])
		run.n += int(gap)
	case run.w.fillGap(run, node, end, off):
	default:
		split = true
	}
	if split {
		if err := run.flush(); err != nil {
			return err
		}
		run.node, run.off = node, off
	}
	run.n += copy(run.buf[run.n:], data)
	return nil
}

// flush writes the gathered run.
func (run *runWriter) flush() error {
	if run.n == 0 {
		return nil
	}
	rs := run.w.rs
	path := rs.paths[run.node]
	data, off := run.buf[:run.n], run.off
	run.n = 0
	if err := writeRun(rs, path, data, off); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeRun writes data at off of the file at path below the restore's
// root: the page-aligned part of a run of at least minDirect with
// O_DIRECT, bypassing the page cache (a
// restore writes every byte once and reads none back, so copying it
// through fresh cache pages costs CPU for nothing), the sub-page tail of
// a file through the cache. Where O_DIRECT does not work, everything
// goes through the cache.
func writeRun(rs *restorer, path string, data []byte, off int64) error {
	done := 0
	if directWrites && !rs.noDirect.Load() && isAligned(data) && off%dioAlign == 0 && len(data) >= minDirect {
		fd, err := openBeneath(rs.stage, path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_DIRECT, 0)
		switch {
		case errors.Is(err, unix.EINVAL):
			rs.noDirect.Store(true)
		case err != nil:
			return err
		default:
			n := len(data) &^ (dioAlign - 1)
			err = pwriteAll(fd, data[:n], off)
			unix.Close(fd)
			if errors.Is(err, unix.EINVAL) {
				rs.noDirect.Store(true) // alignment stricter than a page
			} else if err != nil {
				return err
			} else {
				done = n
			}
		}
	}
	if done == len(data) {
		return nil
	}
	fd, err := openBeneath(rs.stage, path, unix.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	err = pwriteAll(fd, data[done:], off+int64(done))
	if err == nil && len(data)-done >= minDirect {
		// Start writeback now, so the final syncfs finds little to do;
		// short runs wait for it (see minDirect).
		_ = unix.SyncFileRange(fd, off+int64(done), int64(len(data)-done), unix.SYNC_FILE_RANGE_WRITE)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// directWrites turns O_DIRECT on; tests turn it off to exercise the
// buffered path that filesystems without O_DIRECT get.
var directWrites = true

func pwriteAll(fd int, data []byte, off int64) error {
	for p := 0; p < len(data); {
		n, err := unix.Pwrite(fd, data[p:], off+int64(p))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p += n
	}
	return nil
}

// zeroGap reports whether bytes [from, to) of file node may be written
// as zeros now: each block there is a hole in the snapshot, or holds a
// chunk that a later phase writes over the zeros (w.later; never in
// place, where the blocks not written hold the old copy's data).
func (w *chunkWriter) zeroGap(node int32, from, to int64) bool {
	rs := w.rs
	bs := int64(rs.m.BlockSize)
	if from%bs != 0 || to%bs != 0 || rs.partial != nil && rs.partial[node] {
		return false // a span not loaded may hold data there
	}
	bl := rs.m.Nodes[node].Blocks
	first, last := uint64(from/bs), uint64(to/bs)
	k := sort.Search(len(bl), func(k int) bool { return bl[k].Index >= first })
	for ; k < len(bl) && bl[k].Index < last; k++ {
		if w.later == nil || rs.inPlace || !w.later[bl[k].Chunk] {
			return false
		}
	}
	return true
}
