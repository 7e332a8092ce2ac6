package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
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
)

// fill writes the content of every file: chunks still present in the
// previous local copy are copied from it (and verified), the rest fetched
// with concurrent ranged GETs.
func (rs *restorer) fill(ctx context.Context) error {
	m := rs.m
	// dests in CSR form: dests[start[c]:start[c+1]] are chunk c's.
	start := make([]int32, len(m.Chunks)+1)
	for i := range m.Nodes {
		if m.Nodes[i].Type == TypeFile && !rs.linked[i] {
			for _, b := range m.Nodes[i].Blocks {
				start[b.Chunk+1]++
			}
		}
	}
	for c := range m.Chunks {
		start[c+1] += start[c]
	}
	dests := make([]dest, start[len(m.Chunks)])
	fillPos := slices.Clone(start[:len(m.Chunks)])
	var files uint64
	for i := range m.Nodes {
		if m.Nodes[i].Type != TypeFile || rs.linked[i] {
			continue
		}
		files++
		for _, b := range m.Nodes[i].Blocks {
			dests[fillPos[b.Chunk]] = dest{int32(i), b.Index}
			fillPos[b.Chunk]++
			rs.prog.bytes.Add(uint64(m.Chunks[b.Chunk].RawLength))
		}
	}
	rs.prog.files.Store(files)
	rs.prog.totalKnown.Store(true)
	w := &chunkWriter{rs: rs, start: start, dests: dests, wb: rs.startWriteback()}
	defer w.wb.stop()

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
		missed, err := rs.copyLocal(ctx, w, local)
		if err != nil {
			return err
		}
		remote = append(remote, missed...)
	}
	rs.prog.setPhase("download")
	return rs.fetchRemote(ctx, w, remote)
}

// chunkWriter writes verified chunk data to every place it belongs.
type chunkWriter struct {
	rs    *restorer
	start []int32
	dests []dest
	wb    *writeback
}

// writeback asks the kernel to start writing restored blocks to disk soon
// after they are written, from a goroutine of its own (sync_file_range
// can block while the device is busy), so that the disk works while later
// chunks download and the final syncfs finds little left to do. It is
// only a hint: write errors surface at syncfs.
type writeback struct {
	rs   *restorer
	reqs chan writebackReq
	done chan struct{}
}

type writebackReq struct {
	dest
	n int
}

func (rs *restorer) startWriteback() *writeback {
	wb := &writeback{rs: rs, reqs: make(chan writebackReq, 1024), done: make(chan struct{})}
	go func() {
		defer close(wb.done)
		bs := int64(rs.m.BlockSize)
		node, fd := int32(-1), -1
		for r := range wb.reqs {
			if r.node != node {
				if fd >= 0 {
					unix.Close(fd)
				}
				node = r.node
				fd, _ = openBeneath(rs.stage, rs.paths[node], unix.O_RDONLY|unix.O_NOFOLLOW, 0)
			}
			if fd >= 0 {
				_ = unix.SyncFileRange(fd, int64(r.index)*bs, int64(r.n), unix.SYNC_FILE_RANGE_WRITE)
			}
		}
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	return wb
}

// add queues a written block; if the queue is full the hint is dropped.
func (wb *writeback) add(d dest, n int) {
	select {
	case wb.reqs <- writebackReq{d, n}:
	default:
	}
}

func (wb *writeback) stop() {
	close(wb.reqs)
	<-wb.done
}

func (w *chunkWriter) write(c uint32, data []byte) error {
	rs := w.rs
	bs := int64(rs.m.BlockSize)
	for _, d := range w.dests[w.start[c]:w.start[c+1]] {
		path, off := rs.paths[d.node], int64(d.index)*bs
		direct, err := w.writeDirect(path, data, off)
		if err == nil && !direct {
			err = w.writeBuffered(path, data, off, 0)
			if w.wb != nil {
				w.wb.add(d, len(data))
			}
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		rs.prog.done.Add(uint64(len(data)))
	}
	return nil
}

// writeDirect writes data at off with O_DIRECT, bypassing the page cache:
// a restore writes every byte once and reads none back, so copying it
// through freshly allocated cache pages costs CPU (a third of a cold
// restore's, measured) for nothing; the blocks go from the decoder's
// buffer to the device instead. The sub-page tail of a file goes through
// the cache. It reports false, with nothing written, when direct I/O
// does not apply: unaligned buffer, or a filesystem without O_DIRECT
// (then no later write tries it either).
func (w *chunkWriter) writeDirect(path string, data []byte, off int64) (bool, error) {
	if !directWrites || w.rs.noDirect.Load() || len(data) < dioAlign || !isAligned(data) {
		return false, nil
	}
	fd, err := openBeneath(w.rs.stage, path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		w.rs.noDirect.Store(true)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tail, err := pwriteSparse(fd, data, off, true)
	unix.Close(fd)
	if errors.Is(err, unix.EINVAL) {
		// Alignment stricter than a page: buffered from now on.
		w.rs.noDirect.Store(true)
		return false, nil
	}
	if err == nil && tail < len(data) {
		err = w.writeBuffered(path, data, off, tail)
	}
	return true, err
}

// directWrites turns writeDirect on; tests turn it off to exercise the
// buffered path that filesystems without O_DIRECT get.
var directWrites = true

// writeBuffered writes data[from:] at off+from through the page cache.
func (w *chunkWriter) writeBuffered(path string, data []byte, off int64, from int) error {
	fd, err := openBeneath(w.rs.stage, path, unix.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	_, err = pwriteSparse(fd, data[from:], off+int64(from), false)
	unix.Close(fd)
	return err
}

// copyLocal copies chunks from the previous copy; it returns those whose
// local data no longer matches (they are fetched instead).
func (rs *restorer) copyLocal(ctx context.Context, w *chunkWriter, chunks []uint32) ([]uint32, error) {
	m := rs.m
	slices.SortFunc(chunks, func(a, b uint32) int {
		sa, sb := rs.oldPaths[m.Chunks[a].ID], rs.oldPaths[m.Chunks[b].ID]
		if sa.path != sb.path {
			if sa.path < sb.path {
				return -1
			}
			return 1
		}
		return int(sa.off - sb.off)
	})
	jobs := make(chan uint32)
	var mu sync.Mutex
	var missed []uint32
	g, gctx := errgroup.WithContext(ctx)
	for range rs.r.workers {
		g.Go(func() error {
			buf := alignedBuf(int(m.BlockSize))
			h := rs.r.crypt.newHasher()
			curPath, fd := "", -1
			defer func() {
				if fd >= 0 {
					unix.Close(fd)
				}
			}()
			for c := range jobs {
				ch := &m.Chunks[c]
				src := rs.oldPaths[ch.ID]
				if src.path != curPath {
					if fd >= 0 {
						unix.Close(fd)
					}
					curPath = src.path
					fd, _ = openBeneath(rs.old, src.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
					var st unix.Stat_t
					if fd >= 0 && (unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG) {
						unix.Close(fd)
						fd = -1
					}
				}
				data := buf[:ch.RawLength]
				if fd < 0 || preadFull(fd, data, src.off) != nil || sumID(h, data) != ch.ID {
					mu.Lock()
					missed = append(missed, c)
					mu.Unlock()
					continue
				}
				if err := w.write(c, data); err != nil {
					return err
				}
				rs.prog.reusedByte.Add(uint64(len(data)))
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for _, c := range chunks {
			select {
			case jobs <- c:
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

func (rs *restorer) fetchRemote(ctx context.Context, w *chunkWriter, chunks []uint32) error {
	ranges := planRanges(rs.m, chunks)
	jobs := make(chan *fetchRange)
	g, gctx := errgroup.WithContext(ctx)
	for range rs.r.transfers {
		g.Go(func() error {
			cd, err := rs.r.newChunkDecoder()
			if err != nil {
				return err
			}
			defer cd.close()
			for fr := range jobs {
				err := rs.r.readRange(gctx, rs.m, fr, cd, nil, func(c uint32, data []byte) error {
					return w.write(c, data)
				}, rs.prog)
				if err != nil {
					return err // cancels gctx: the dispatcher stops
				}
			}
			return nil
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
	zr     *zstd.Decoder
	h      *blake3.Hasher
	rec    []byte
	open   []byte
	out    []byte
}

func (r *Repo) newChunkDecoder() (*chunkDecoder, error) {
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(uint64(2*r.blockSize)), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	limit := r.blockSize + sealOverhead + sumSize
	return &chunkDecoder{
		r: r, zr: zr, h: r.crypt.newHasher(),
		rec: alignedBuf(limit), open: alignedBuf(limit)[:0], out: alignedBuf(r.blockSize)[:0],
	}, nil
}

func (cd *chunkDecoder) close() { cd.zr.Close() }

// decode verifies record as chunk ch and returns its plaintext.
func (cd *chunkDecoder) decode(ch *Chunk, record []byte) ([]byte, error) {
	stored, err := cd.r.crypt.openChunk(cd.open[:0], record, ch.ID)
	if err != nil {
		return nil, err
	}
	data := stored
	if ch.Compressed {
		data, err = cd.zr.DecodeAll(stored, cd.out[:0:ch.RawLength])
		if err != nil {
			return nil, fmt.Errorf("decompressing: %w", ErrCorrupt)
		}
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
	var body io.Reader = rc
	if hash != nil {
		body = io.TeeReader(rc, hash)
	}
	pos := fr.off
	for _, c := range fr.chunks {
		ch := &m.Chunks[c]
		if gap := int64(uint64(ch.Offset) - pos); gap > 0 {
			if _, err := io.CopyN(io.Discard, body, gap); err != nil {
				return packReadErr(key, ch, err)
			}
		}
		rec := cd.rec[:ch.Length]
		if _, err := io.ReadFull(body, rec); err != nil {
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
	}
	if hash != nil {
		if _, err := io.Copy(io.Discard, body); err != nil {
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
