package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

const holeRef = ^uint32(0)

// readFile is a file whose content Create reads this run.
type readFile struct {
	node    *Node
	path    string
	st      statEntry
	fd      int
	pending atomic.Int64 // blocks not yet done; the last one closes fd
}

type blockJob struct {
	f *readFile
	i int // index into f.node.Blocks
}

// packBuf is a pack being filled or uploaded.
type packBuf struct {
	idx     int32 // registry pack index
	buf     []byte
	chunks  []Chunk
	entries []int32 // registry chunk index of each of chunks
}

// packer appends chunk records to the current pack and hands full packs
// to the uploaders. Its pool bounds the packs in memory.
type packer struct {
	mu   sync.Mutex
	cur  *packBuf
	free chan *packBuf
	out  chan *packBuf
	size int
	cap  int
	reg  *registry
}

func (p *packer) add(ctx context.Context, record []byte, c Chunk, entry int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		select {
		case pb := <-p.free:
			if pb == nil {
				pb = &packBuf{buf: make([]byte, 0, p.cap)}
			}
			pb.idx, pb.buf, pb.chunks, pb.entries = p.reg.newPack(), pb.buf[:0], pb.chunks[:0], pb.entries[:0]
			p.cur = pb
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	c.Pack = uint32(p.cur.idx)
	c.Offset = uint32(len(p.cur.buf))
	c.Length = uint32(len(record))
	p.cur.buf = append(p.cur.buf, record...)
	p.cur.chunks = append(p.cur.chunks, c)
	p.cur.entries = append(p.cur.entries, entry)
	p.reg.place(entry, c)
	if len(p.cur.buf) >= p.size {
		return p.sendLocked(ctx)
	}
	return nil
}

func (p *packer) sendLocked(ctx context.Context) error {
	pb := p.cur
	p.cur = nil
	select {
	case p.out <- pb:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || len(p.cur.buf) == 0 {
		return nil
	}
	return p.sendLocked(ctx)
}

// readBlocks reads, hashes, compresses, encrypts and uploads the blocks
// of files, split per block over r.workers goroutines, with pack uploads
// overlapping. It fills each file's Blocks with registry indexes (holeRef
// for blocks found to be all zero).
func (r *Repo) readBlocks(parent context.Context, root int, files []*readFile, reg *registry, ixPrefix string, prog *progress, stats *Stats) error {
	g, ctx := errgroup.WithContext(parent)
	jobs := make(chan blockJob, 4*r.workers)
	uploaders := max(1, min(r.transfers/2, 4)) // packs in memory: uploaders + 1
	pk := &packer{
		free: make(chan *packBuf, uploaders+1),
		out:  make(chan *packBuf),
		size: r.packSize,
		cap:  r.packSize + r.blockSize + r.crypt.chunkOverhead(),
		reg:  reg,
	}
	for range uploaders + 1 {
		pk.free <- nil
	}
	var newChunks, newBytes, uploaded, filesRead, bytesRead atomic.Uint64

	// Dispatcher: open each file once, find its data blocks, queue them.
	g.Go(func() error {
		defer close(jobs)
		defer prog.totalKnown.Store(true) // every file's blocks are counted (or the run failed)
		for _, f := range files {
			if err := r.openForRead(root, f); err != nil {
				return err
			}
			filesRead.Add(1)
			bytesRead.Add(f.st.Size)
			for _, b := range f.node.Blocks {
				prog.bytes.Add(blockLen(f.st.Size, b.Index, r.blockSize))
			}
			if len(f.node.Blocks) == 0 {
				unix.Close(f.fd)
				continue
			}
			f.pending.Store(int64(len(f.node.Blocks)))
			for i := range f.node.Blocks {
				select {
				case jobs <- blockJob{f, i}:
				case <-ctx.Done():
					// Workers drain queued jobs; close what they never see.
					if f.pending.Add(-int64(len(f.node.Blocks)-i)) == 0 {
						unix.Close(f.fd)
					}
					return nil
				}
			}
		}
		return nil
	})

	var workers sync.WaitGroup
	for range r.workers {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			return r.blockWorker(ctx, jobs, reg, pk, prog, &newChunks, &newBytes)
		})
	}

	// Uploaders: store each full pack, then its index.
	var upl sync.WaitGroup
	for range uploaders {
		upl.Add(1)
		g.Go(func() error {
			defer upl.Done()
			for pb := range pk.out {
				if ctx.Err() != nil {
					continue // drain so senders never block
				}
				if err := r.uploadPack(ctx, pb, ixPrefix, reg); err != nil {
					return err
				}
				uploaded.Add(uint64(len(pb.buf)))
				prog.transferred.Add(uint64(len(pb.buf)))
				pk.free <- pb
			}
			return nil
		})
	}
	// Closer: once the workers are done, send the last pack and stop the
	// uploaders.
	g.Go(func() error {
		workers.Wait()
		var err error
		if ctx.Err() == nil {
			err = pk.flush(ctx)
		}
		close(pk.out)
		return err
	})
	err := cmp.Or(g.Wait(), context.Cause(parent))
	// A failed worker stopped reading jobs: close the files of the blocks
	// still queued (the dispatcher closed jobs before Wait returned).
	for job := range jobs {
		if job.f.pending.Add(-1) == 0 {
			unix.Close(job.f.fd)
		}
	}
	stats.FilesRead, stats.BytesRead = filesRead.Load(), bytesRead.Load()
	stats.NewChunks, stats.NewBytes, stats.UploadedBytes = newChunks.Load(), newBytes.Load(), uploaded.Load()
	return err
}

func (r *Repo) openForRead(root int, f *readFile) error {
	fd, err := openBeneath(root, f.path, unix.O_RDONLY|unix.O_NOATIME|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = openBeneath(root, f.path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != f.st.Ino {
		unix.Close(fd)
		return fmt.Errorf("%s: replaced while snapshotting: %w", f.path, ErrChanged)
	}
	blocks, err := dataBlocks(fd, int64(f.st.Size), r.blockSize)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	f.fd = fd
	f.node.Blocks = make([]BlockRef, len(blocks))
	for i, b := range blocks {
		f.node.Blocks[i] = BlockRef{Index: b, Chunk: holeRef}
	}
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	for i := range min(readAhead, len(blocks)) {
		r.prefetch(f, i)
	}
	return nil
}

// readAhead is how many blocks of a file ahead of the one being read
// the kernel is asked to fetch, so that workers find their next block in
// the page cache rather than wait for the disk with a core idle.
const readAhead = 8

// prefetch asks the kernel to start reading block i of f, if it exists.
// Only a hint.
func (r *Repo) prefetch(f *readFile, i int) {
	if i < len(f.node.Blocks) {
		bs := int64(r.blockSize)
		_ = unix.Fadvise(f.fd, int64(f.node.Blocks[i].Index)*bs, bs, unix.FADV_WILLNEED)
	}
}

func (r *Repo) blockWorker(ctx context.Context, jobs <-chan blockJob, reg *registry, pk *packer, prog *progress, newChunks, newBytes *atomic.Uint64) error {
	bs := r.blockSize
	buf := make([]byte, bs)
	zbuf := make([]byte, 0, bs+bs/8+1024)
	var sbuf []byte
	if r.crypt.encrypted() {
		sbuf = make([]byte, 0, bs+bs/8+1024+sealOverhead)
	}
	h := r.crypt.newHasher()
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false))
	if err != nil {
		return err
	}
	defer zw.Close()
	// After another worker failed, keep draining so every file gets
	// closed; a worker that fails returns at once (cancelling ctx) and
	// readBlocks closes what is left in jobs.
	for job := range jobs {
		var err error
		if ctx.Err() == nil {
			err = r.doBlock(ctx, job, buf, zbuf, sbuf, h, zw, reg, pk, newChunks, newBytes)
			prog.done.Add(blockLen(job.f.st.Size, job.f.node.Blocks[job.i].Index, bs))
		}
		if job.f.pending.Add(-1) == 0 {
			unix.Close(job.f.fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) doBlock(ctx context.Context, job blockJob, buf, zbuf, sbuf []byte, h *blake3.Hasher, zw *zstd.Encoder,
	reg *registry, pk *packer, newChunks, newBytes *atomic.Uint64) error {
	f, ref := job.f, &job.f.node.Blocks[job.i]
	n := blockLen(f.st.Size, ref.Index, r.blockSize)
	data := buf[:n]
	r.prefetch(f, job.i+readAhead)
	if err := preadFull(f.fd, data, int64(ref.Index)*int64(r.blockSize)); err != nil {
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	if allZero(data) {
		return nil // a hole: nothing stored
	}
	id := sumID(h, data)
	idx, mine := reg.claim(id, uint32(n))
	ref.Chunk = uint32(idx)
	if !mine {
		return nil
	}
	c := Chunk{ID: id, RawLength: uint32(n)}
	stored := data
	if z := zw.EncodeAll(data, zbuf[:0]); len(z) < len(data)-len(data)/32 {
		stored, c.Compressed = z, true
	}
	record := stored
	if r.crypt.encrypted() {
		record = r.crypt.sealChunk(sbuf[:0], stored, id)
	}
	newChunks.Add(1)
	newBytes.Add(n)
	return pk.add(ctx, record, c, idx)
}

func (r *Repo) uploadPack(ctx context.Context, pb *packBuf, ixPrefix string, reg *registry) error {
	id := ID(blake3.Sum256(pb.buf))
	if reg.avoid[packKey(id)] && len(pb.chunks) > 1 {
		// A retry re-packing the chunks of a pack a prune is deleting
		// would recreate it under the same name (a plain store's packs
		// are deterministic), and the sweep would take it: change the
		// record order, which changes the name (guard.go).
		rotatePack(pb, reg)
		id = ID(blake3.Sum256(pb.buf))
	}
	key := packKey(id)
	if err := r.store.Put(ctx, key, bytes.NewReader(pb.buf), int64(len(pb.buf))); err != nil {
		return fmt.Errorf("uploading pack %s: %w", key, err)
	}
	ixKey := ixPrefix + id.String()
	ix := encodeIndex(&packIndex{Pack: id, Size: uint64(len(pb.buf)), Chunks: pb.chunks}, ixKey, r.crypt)
	if err := r.store.Put(ctx, ixKey, bytes.NewReader(ix), int64(len(ix))); err != nil {
		return fmt.Errorf("uploading pack index %s: %w", ixKey, err)
	}
	reg.setPack(pb.idx, id)
	return nil
}

// rotatePack moves the first record of pb to its end.
func rotatePack(pb *packBuf, reg *registry) {
	first := pb.chunks[0]
	buf := make([]byte, 0, len(pb.buf))
	buf = append(buf, pb.buf[first.Length:]...)
	buf = append(buf, pb.buf[:first.Length]...)
	chunks := append(append([]Chunk{}, pb.chunks[1:]...), first)
	entries := append(append([]int32{}, pb.entries[1:]...), pb.entries[0])
	off := uint32(0)
	for i := range chunks {
		chunks[i].Offset = off
		off += chunks[i].Length
		reg.place(entries[i], chunks[i])
	}
	pb.buf, pb.chunks, pb.entries = buf, chunks, entries
}
