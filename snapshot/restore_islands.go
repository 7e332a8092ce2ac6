package snapshot

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
)

// Islands. Create stores a changed block in a new pack, and its unchanged
// neighbours stay in the parent's packs, so a cold restore of a database
// after scattered page writes meets a block from another pack every
// hundred kilobytes or so of a file: each ended a run, and the restore
// wrote in pieces (bench/handoffprof, PostgreSQL 1.8 GB after pgbench -c 2
// -t 2000: 12 000 O_DIRECT writes of 153 KiB on average, most of the
// restore's time). Such blocks, islands, are fetched first, verified as
// every chunk is, and kept in memory (up to islandBudget bytes); a run
// that reaches one takes its data and goes on. Islands no run took are
// written on their own at the end. Every block is still written once,
// with data that was verified.
const islandBudget = 256 << 20

// islands holds the fetched island chunks of one restore.
type islands struct {
	mu   sync.Mutex
	data map[uint32][]byte // chunk → verified plaintext
	// taken[k] is set once dests[k] was written as part of a run.
	taken []atomic.Bool
}

// findIslands picks the remote chunks, up to islandBudget bytes, of
// stretches of adjacent blocks from one pack, short enough for a run to
// take (holeFill), with adjacent blocks from other packs on both sides.
func (rs *restorer) findIslands(remote []uint32) []uint32 {
	m := rs.m
	isRemote := make(map[uint32]bool, len(remote))
	for _, c := range remote {
		isRemote[c] = true
	}
	maxLen := max(1, holeFill/int(m.BlockSize))
	picked := map[uint32]bool{}
	var out []uint32
	budget := int64(islandBudget)
	pack := func(b BlockRef) uint32 { return m.Chunks[b.Chunk].Pack }
	for i := range m.Nodes {
		bl := rs.blocksToWrite(i)
		for k := 1; k < len(bl); {
			// bl[k:e] is a stretch of adjacent blocks from one pack.
			e := k + 1
			for e < len(bl) && bl[e].Index == bl[e-1].Index+1 && pack(bl[e]) == pack(bl[k]) {
				e++
			}
			island := e-k <= maxLen && e < len(bl) && bl[e].Index == bl[e-1].Index+1 &&
				bl[k-1].Index+1 == bl[k].Index && pack(bl[k-1]) != pack(bl[k])
			for j := k; island && j < e; j++ {
				c := bl[j].Chunk
				if picked[c] || !isRemote[c] {
					continue
				}
				if budget -= int64(m.Chunks[c].RawLength); budget < 0 {
					return out
				}
				picked[c] = true
				out = append(out, c)
			}
			k = e
		}
	}
	return out
}

// fillGap puts the island data of node's blocks [from, to) into run's
// buffer, if every one of them is an island not yet written, and marks
// them taken. It reports whether it did.
func (w *chunkWriter) fillGap(run *runWriter, node int32, from, to int64) bool {
	is := w.isl
	bs := int64(w.rs.m.BlockSize)
	if is == nil || from%bs != 0 || to%bs != 0 || w.rs.partial != nil {
		return false
	}
	bl := w.rs.blocksToWrite(int(node))
	first := uint64(from / bs)
	k := sort.Search(len(bl), func(k int) bool { return bl[k].Index >= first })
	n := int((to - from) / bs)
	if k+n > len(bl) || bl[k+n-1].Index != first+uint64(n)-1 {
		return false // a block in the gap is not to be written
	}
	dk := make([]int, n)
	for j := range n {
		c := bl[k+j].Chunk
		if _, ok := is.data[c]; !ok {
			return false
		}
		dk[j] = -1
		for d := w.start[c]; d < w.start[c+1]; d++ {
			if w.dests[d] == (dest{node, bl[k+j].Index}) {
				dk[j] = int(d)
				break
			}
		}
		if dk[j] < 0 || is.taken[dk[j]].Load() {
			return false
		}
	}
	// Only the worker whose run reaches the gap writes it: its blocks
	// are claimed one by one, and a block claimed meanwhile by another
	// run (a destination of a duplicate chunk) ends this one.
	for j := range n {
		if !is.taken[dk[j]].CompareAndSwap(false, true) {
			for _, d := range dk[:j] {
				is.taken[d].Store(false)
			}
			return false
		}
	}
	for j := range n {
		data := is.data[bl[k+j].Chunk]
		copy(run.buf[run.n+j*int(bs):], data)
		clear(run.buf[run.n+j*int(bs)+len(data) : run.n+(j+1)*int(bs)])
		w.rs.prog.done.Add(uint64(len(data)))
	}
	run.n += n * int(bs)
	return true
}

// fetchIslands fetches chunks into memory, verified.
func (rs *restorer) fetchIslands(ctx context.Context, w *chunkWriter, chunks []uint32) error {
	is := &islands{data: make(map[uint32][]byte, len(chunks)), taken: make([]atomic.Bool, len(w.dests))}
	err := rs.fetchChunks(ctx, chunks, func(_ *runWriter, c uint32, data []byte) error {
		d := append([]byte(nil), data...)
		is.mu.Lock()
		is.data[c] = d
		is.mu.Unlock()
		return nil
	}, nil)
	if err != nil {
		return err
	}
	w.isl = is
	return nil
}

// writeIslands writes the destinations of island chunks that no run took.
func (rs *restorer) writeIslands(w *chunkWriter) error {
	is := w.isl
	if is == nil {
		return nil
	}
	run := w.newRun()
	bs := int64(rs.m.BlockSize)
	cs := make([]uint32, 0, len(is.data))
	for c := range is.data {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(a, b int) bool { return cs[a] < cs[b] })
	for _, c := range cs {
		for d := w.start[c]; d < w.start[c+1]; d++ {
			if is.taken[d].Load() {
				continue
			}
			is.taken[d].Store(true)
			dst := w.dests[d]
			if err := run.put(dst.node, int64(dst.index)*bs, is.data[c]); err != nil {
				return err
			}
			rs.prog.done.Add(uint64(len(is.data[c])))
		}
	}
	return run.flush()
}
