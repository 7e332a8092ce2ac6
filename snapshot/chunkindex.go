package snapshot

import "encoding/binary"

// chunkIndex finds a chunk's position in a chunk table by ID, in about
// 16 bytes per chunk where a map[ID]int32 takes ~57: a volume's chunk
// index is, with its chunk table, what Create's memory grows with.
// Open addressing on the first 8 bytes of the ID (IDs are uniformly
// random, keyed or not); the full ID is checked in the table.
type chunkIndex struct {
	keys []uint64
	vals []uint32 // table position + 1; 0 is an empty slot
	n    int
}

func newChunkIndex(expect int) *chunkIndex {
	size := 16
	for size*3 < expect*4 { // load at most 3/4
		size *= 2
	}
	return &chunkIndex{keys: make([]uint64, size), vals: make([]uint32, size)}
}

func idKey(id *ID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// get returns the position of id in chunks.
func (x *chunkIndex) get(id *ID, chunks []Chunk) (int32, bool) {
	k := idKey(id)
	mask := uint64(len(x.keys) - 1)
	for i := k & mask; ; i = (i + 1) & mask {
		v := x.vals[i]
		if v == 0 {
			return 0, false
		}
		if x.keys[i] == k && chunks[v-1].ID == *id {
			return int32(v - 1), true
		}
	}
}

// put records that chunks[pos] has ID id (not already present).
func (x *chunkIndex) put(id *ID, pos int32) {
	if (x.n+1)*4 > len(x.keys)*3 {
		x.grow()
	}
	x.insert(idKey(id), uint32(pos)+1)
	x.n++
}

func (x *chunkIndex) insert(k uint64, v uint32) {
	mask := uint64(len(x.keys) - 1)
	i := k & mask
	for x.vals[i] != 0 {
		i = (i + 1) & mask
	}
	x.keys[i], x.vals[i] = k, v
}

func (x *chunkIndex) grow() {
	keys, vals := x.keys, x.vals
	x.keys, x.vals = make([]uint64, 2*len(keys)), make([]uint32, 2*len(vals))
	for i, v := range vals {
		if v != 0 {
			x.insert(keys[i], v)
		}
	}
}
