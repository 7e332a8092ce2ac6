package snapshot

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/portvol/portvol/transfer"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// dest is one place a chunk goes: block Index of file node Node.
type dest struct {
	node  int32
	index uint64
}

// fetchRange is a byte range of one pack holding chunks to fetch, in
// offset order.
type fetchRange struct {
	pack     uint32
	off, end uint64
	chunks   []uint32
}

const (
	maxRangeGap  = 256 << 10 // read through gaps up to this size rather than split
	maxRangeSize = 8 << 20
	rangeReadBuf = 256 << 10 // read size from a range's body

	// restoreFetchers is how many ranged reads a restore keeps in flight
	// by default (Options.Transfers unset). Each fetcher reads a range,
	// decodes its chunks and writes their runs, so with few of them the
	// store, the CPUs and the disk take turns. Measured (2026-12-07,
	// bench/handoffprof, a 1.8 GB PostgreSQL data directory with a
	// random-text filler, 1.2 GB of packs, versitygw on 127.0.0.1,
	// caches dropped, cold restores into a btrfs subvolume, 3 alternated
	// runs each): 4 fetchers 2.24-2.51 s, 8 1.88-3.07 s, 16 1.88-2.27 s,
	// 32 2.05-2.22 s. In make bench-handoff's cold case (host B in a
	// network namespace of its own, 1092 MiB fetched), B's restore took
	// 3.09, 3.33 and 4.4 s with 4, then 2.72, 2.58 and 2.82 s with 16.
	// Each costs about 4.6 MiB (its run buffer); a store's own limit on
	// requests in flight (16 for S3) still holds.
	restoreFetchers = 16
)

// fill writes the content of every file: chunks still present in the
// previous local copy are copied from it (and verified), the rest fetched
// with concurrent ranged GETs.
func (rs *restorer) fill(ctx context.Context) error {
	m := rs.m
	// dests in CSR form: dests[start[c]:start[c+1]] are chunk c's.
	start := make([]int32, len(m.Chunks)+1)
	for i := range m.Nodes {
		for _, b := range rs.blocksToWrite(i) {
			start[b.Chunk+1]++
		}
	}
	for c := range m.Chunks {
		start[c+1] += start[c]
	}
	dests := make([]dest, start[len(m.Chunks)])
	fillPos := slices.Clone(start[:len(m.Chunks)])
	var files, total uint64
	for i := range m.Nodes {
		bl := rs.blocksToWrite(i)
		if len(bl) == 0 {
			continue
		}
		files++
		for _, b := range bl {
			dests[fillPos[b.Chunk]] = dest{int32(i), b.Index}
			fillPos[b.Chunk]++
			total += uint64(m.Chunks[b.Chunk].RawLength)
		}
	}
	rs.prog.files.Store(files)
	rs.prog.bytes.Store(total)
	rs.prog.totalKnown.Store(true)
	w := &chunkWriter{rs: rs, start: start, dests: dests}

	var remote []uint32
	var local []uint32
	for c := range m.Chunks {
		if start[c] == start[c+1] {
			continue
		}
		if _, ok := rs.oldPaths[m.Chunks[c].ID]; ok && rs.old >= 0 {
			local = append(local, uint32(c))
		} else {
			remote = append(remote, uint32(c))
		}
	}
	if len(local) > 0 {
		rs.prog.setPhase("local")
		w.later = make([]bool, len(m.Chunks))
		for _, c := range remote {
			w.later[c] = true
		}
		missed, err := rs.copyLocal(ctx, w, local)
		w.later = nil
		if err != nil {
			return err
		}
		remote = append(remote, missed...)
	}
	rs.prog.setPhase("download")
	if !rs.inPlace && len(local) == 0 {
		if isl := rs.findIslands(remote); len(isl) > 0 {
			if err := rs.fetchIslands(ctx, w, isl); err != nil {
				return err
			}
			remote = slices.DeleteFunc(remote, func(c uint32) bool { _, ok := w.isl.data[c]; return ok })
		}
	}
	if err := rs.fetchChunks(ctx, remote, w.write, w); err != nil {
		return err
	}
	return rs.writeIslands(w)
}

// blocksToWrite lists the blocks of node i that fill writes.
func (rs *restorer) blocksToWrite(i int) []BlockRef {
	switch {
	case rs.m.Nodes[i].Type != TypeFile || rs.linked[i]:
		return nil
	case rs.write != nil:
		return rs.write[i]
	}
	return rs.m.Nodes[i].Blocks
}

// localSpan is the most copyLocal reads with one pread: chunks adjacent
// in the old file go to one worker together, so that their writes gather
// into one run (see runWriter). Handed out one chunk at a time, the
// workers took turns along a file and every run was one 16 KiB block:
// 59k O_DIRECT writes of 16 KiB for 835 MiB reused (export --force onto
// the previous copy of a 1.6 GB PostgreSQL after pgbench, on a VM where
// each direct write costs the device a kick).
const localSpan = 2 << 20

// localBatch is chunks[i:j] of copyLocal's sorted list, all within
// bytes [off, off+n) of the old file path.
type localBatch struct {
	path string
	off  int64
	n    int // bytes
	cs   []uint32
}

// copyLocal copies chunks from the previous copy; it returns those whose
// local data no longer matches (they are fetched instead).
func (rs *restorer) copyLocal(ctx context.Context, w *chunkWriter, chunks []uint32) ([]uint32, error) {
	m := rs.m
	slices.SortFunc(chunks, func(a, b uint32) int {
		sa, sb := rs.oldPaths[m.Chunks[a].ID], rs.oldPaths[m.Chunks[b].ID]
		return cmp.Or(strings.Compare(sa.path, sb.path), cmp.Compare(sa.off, sb.off))
	})
	// A batch spans up to localSpan bytes of one old file and may skip
	// over gaps of up to holeFill (read, not used): those are mostly the
	// changed blocks, fetched after this phase, and the run writes zeros
	// there now for the fetch to overwrite (chunkWriter.later).
	var batches []localBatch
	for i := 0; i < len(chunks); {
		src := rs.oldPaths[m.Chunks[chunks[i]].ID]
		end := src.off + int64(m.Chunks[chunks[i]].RawLength)
		j := i + 1
		for ; j < len(chunks); j++ {
			s := rs.oldPaths[m.Chunks[chunks[j]].ID]
			e := s.off + int64(m.Chunks[chunks[j]].RawLength)
			if s.path != src.path || s.off < end || s.off-end > holeFill || e-src.off > localSpan {
				break
			}
			end = e
		}
		batches = append(batches, localBatch{src.path, src.off, int(end - src.off), chunks[i:j]})
		i = j
	}
	jobs := make(chan *localBatch)
	var mu sync.Mutex
	var missed []uint32
	g, gctx := errgroup.WithContext(ctx)
	for range rs.r.workers {
		g.Go(func() error {
			buf := alignedBuf(max(localSpan, int(m.BlockSize)))
			h := rs.r.crypt.newHasher()
			run := w.newRun()
			curPath, fd := "", -1
			defer func() {
				if fd >= 0 {
					unix.Close(fd)
				}
			}()
			for b := range jobs {
				if b.path != curPath {
					if fd >= 0 {
						unix.Close(fd)
					}
					curPath = b.path
					fd, _ = openBeneath(rs.old, b.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
					var st unix.Stat_t
					if fd >= 0 && (unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG) {
						unix.Close(fd)
						fd = -1
					}
				}
				span := buf[:b.n]
				readOK := fd >= 0 && preadFull(fd, span, b.off) == nil
				for _, c := range b.cs {
					ch := &m.Chunks[c]
					at := rs.oldPaths[ch.ID].off - b.off
					data := span[at : at+int64(ch.RawLength)]
					if !readOK || sumID(h, data) != ch.ID {
						mu.Lock()
						missed = append(missed, c)
						mu.Unlock()
						continue
					}
					if err := w.write(run, c, data); err != nil {
						return err
					}
					rs.prog.reusedByte.Add(uint64(len(data)))
				}
			}
			return run.flush()
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for i := range batches {
			select {
			case jobs <- &batches[i]:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	if err := cmp.Or(g.Wait(), context.Cause(ctx)); err != nil {
		return nil, err
	}
	return missed, nil
}

// planRanges groups chunks by pack into ranges of adjacent chunks.
func planRanges(m *Manifest, chunks []uint32) []fetchRange {
	slices.SortFunc(chunks, func(a, b uint32) int {
		ca, cb := &m.Chunks[a], &m.Chunks[b]
		if ca.Pack != cb.Pack {
			return int(ca.Pack) - int(cb.Pack)
		}
		return int(ca.Offset) - int(cb.Offset)
	})
	var out []fetchRange
	for _, c := range chunks {
		ch := &m.Chunks[c]
		off, end := uint64(ch.Offset), uint64(ch.Offset)+uint64(ch.Length)
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.pack == ch.Pack && off >= last.end && off-last.end <= maxRangeGap && end-last.off <= maxRangeSize {
				last.end = end
				last.chunks = append(last.chunks, c)
				continue
			}
		}
		out = append(out, fetchRange{pack: ch.Pack, off: off, end: end, chunks: []uint32{c}})
	}
	return out
}

// fetchChunks fetches chunks and hands each, verified, to fn with the
// goroutine's run of w (nil without w).
func (rs *restorer) fetchChunks(ctx context.Context, chunks []uint32, fn func(run *runWriter, c uint32, data []byte) error, w *chunkWriter) error {
	ranges := planRanges(rs.m, chunks)
	jobs := make(chan *fetchRange)
	g, gctx := errgroup.WithContext(ctx)
	// No more fetchers than ranges: each allocates its buffers, and an
	// in-place restore often has only a few ranges.
	for range min(rs.r.fetchers, len(ranges)) {
		g.Go(func() error {
			cd, err := rs.r.newChunkDecoder(rs.m.BlockSize)
			if err != nil {
				return err
			}
			defer cd.close()
			var run *runWriter
			if w != nil {
				run = w.newRun()
			}
			for fr := range jobs {
				err := rs.r.readRange(gctx, rs.m, fr, cd, nil, func(c uint32, data []byte) error {
					return fn(run, c, data)
				}, rs.prog)
				if err != nil {
					return err // cancels gctx: the dispatcher stops
				}
			}
			if run == nil {
				return nil
			}
			return run.flush()
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for i := range ranges {
			select {
			case jobs <- &ranges[i]:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	return cmp.Or(g.Wait(), context.Cause(ctx))
}

// chunkDecoder turns records into verified plaintext; one per goroutine.
// Its buffers are page-aligned so that plaintext can be written with
// O_DIRECT.
type chunkDecoder struct {
	r *Repo
	// rehash makes decode recompute the ID of chunks that the AEAD has
	// already authenticated (Verify re-checks everything).
	rehash bool
	dc     *decompressor
	h      *blake3.Hasher
	rec    []byte
	open   []byte
	out    []byte
	id     []byte // see sealChunk
	// br reads pack ranges in large pieces: records of 16 KiB chunks are
	// small, and reading each straight from a network body costs a
	// system call or more per record.
	br *bufio.Reader
}

// newChunkDecoder decodes chunks of at most bs bytes.
func (r *Repo) newChunkDecoder(bs int) (*chunkDecoder, error) {
	dc, err := newDecompressor(bs)
	if err != nil {
		return nil, err
	}
	limit := bs + bs/8 + 1024 + sealOverhead + sumSize
	return &chunkDecoder{
		r: r, dc: dc, h: r.crypt.newHasher(),
		rec: alignedBuf(limit), open: alignedBuf(limit)[:0], out: alignedBuf(bs)[:0], id: make([]byte, 32),
		br: bufio.NewReaderSize(nil, rangeReadBuf),
	}, nil
}

func (cd *chunkDecoder) close() { cd.dc.close() }

// decode verifies record as chunk ch and returns its plaintext.
func (cd *chunkDecoder) decode(ch *Chunk, record []byte) ([]byte, error) {
	if len(record) > len(cd.rec) {
		return nil, fmt.Errorf("record of %d bytes: %w", len(record), ErrCorrupt)
	}
	copy(cd.id, ch.ID[:])
	stored, err := cd.r.crypt.openChunk(cd.open[:0], record, cd.id)
	if err != nil {
		return nil, err
	}
	if int(ch.RawLength) > cap(cd.out) {
		return nil, fmt.Errorf("chunk of %d bytes: %w", ch.RawLength, ErrCorrupt)
	}
	data, err := cd.dc.decode(ch.Codec, cd.out, stored, int(ch.RawLength))
	if err != nil {
		return nil, err
	}
	if len(data) != int(ch.RawLength) {
		return nil, fmt.Errorf("%d bytes instead of %d: %w", len(data), ch.RawLength, ErrCorrupt)
	}
	// In an encrypted store the AEAD tag, over associated data that is
	// the chunk ID, has verified the record; only a key holder could have
	// sealed it for this ID. A plain store has only the ID.
	if (!cd.r.crypt.encrypted() || cd.rehash) && sumID(cd.h, data) != ch.ID {
		return nil, fmt.Errorf("content does not match its id: %w", ErrCorrupt)
	}
	return data, nil
}

// readRange fetches fr and hands each verified chunk to fn. When hash is
// set, every byte read is also written to it (Verify checks whole packs).
func (r *Repo) readRange(ctx context.Context, m *Manifest, fr *fetchRange, cd *chunkDecoder, hash io.Writer,
	fn func(c uint32, data []byte) error, prog *progress) error {
	key := packKey(m.Packs[fr.pack])
	length := int64(fr.end - fr.off)
	if hash != nil {
		length = -1 // the whole pack, from fr.off
	}
	rc, err := r.store.Get(ctx, key, int64(fr.off), length)
	if err != nil {
		if errors.Is(err, transfer.ErrNotExist) {
			return fmt.Errorf("pack %s is missing: %w", key, errors.Join(ErrCorrupt, err))
		}
		return fmt.Errorf("reading pack %s: %w", key, err)
	}
	defer rc.Close()
	var src io.Reader = rc
	if hash != nil {
		src = io.TeeReader(rc, hash)
	}
	cd.br.Reset(src)
	defer cd.br.Reset(nil)
	pos := fr.off
	for _, c := range fr.chunks {
		ch := &m.Chunks[c]
		if gap := int(uint64(ch.Offset) - pos); gap > 0 {
			if _, err := cd.br.Discard(gap); err != nil {
				return packReadErr(key, ch, err)
			}
		}
		if int(ch.Length) > len(cd.rec) {
			return fmt.Errorf("pack %s: chunk %s: record of %d bytes: %w", key, ch.ID, ch.Length, ErrCorrupt)
		}
		// A record that fits the read buffer is decoded where it lies
		// there, one copy less per chunk (profiles of a cold restore of
		// 1.2 GB of packs: copying out of this buffer took 0.15 CPU-s
		// before, 0.09 s of the HTTP body's copy into it remain); it stays
		// valid until the Discard, after fn, which copies what it keeps.
		var rec []byte
		peeked := int(ch.Length) <= cd.br.Size()
		if peeked {
			rec, err = cd.br.Peek(int(ch.Length))
		} else {
			rec = cd.rec[:ch.Length]
			_, err = io.ReadFull(cd.br, rec)
		}
		if err != nil {
			return packReadErr(key, ch, err)
		}
		pos = uint64(ch.Offset) + uint64(ch.Length)
		if prog != nil {
			prog.transferred.Add(uint64(ch.Length))
		}
		data, err := cd.decode(ch, rec)
		if err != nil {
			return fmt.Errorf("pack %s: chunk %s at offset %d: %w", key, ch.ID, ch.Offset, err)
		}
		if err := fn(c, data); err != nil {
			return err
		}
		if peeked {
			if _, err := cd.br.Discard(len(rec)); err != nil {
				return packReadErr(key, ch, err)
			}
		}
	}
	if hash != nil {
		if _, err := io.Copy(io.Discard, cd.br); err != nil {
			return fmt.Errorf("reading pack %s: %w", key, err)
		}
	}
	return nil
}

func packReadErr(key string, ch *Chunk, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("pack %s is truncated: chunk %s at offset %d: %w", key, ch.ID, ch.Offset, ErrCorrupt)
	}
	return fmt.Errorf("reading pack %s: %w", key, err)
}
