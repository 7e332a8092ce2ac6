package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

const holeRef = ^uint32(0)

// readFile is a file whose content Create reads this run.
type readFile struct {
	node *Node
	idx  int32 // node's index in the tree
	path string
	st   statEntry
	// live: the tree may change under Create (CreateOptions.Live);
	// vanished: the file was gone when it was to be read, and is left out.
	live, vanished bool
	// replaced: the file at path was another one when it was read
	// (live only): its stat entry in the tree must follow.
	replaced bool
	// only, if set, lists the blocks that may have changed since the
	// parent (sorted, inclusive ranges); the others keep base's chunks.
	only    [][2]uint64
	base    []BlockRef
	fd      int
	pending atomic.Int64 // jobs not yet done; the last one closes fd
}

// runBlocksFor is the most blocks one job reads with one pread: 64, or
// 4 MiB of small blocks. The blocks of one job lie together in a pack, so
// this is also the longest piece of one file a restore can write with
// one write (see doc.go, "Restore").
func runBlocksFor(bs int) int { return max(64, (4<<20)/bs) }

// blockJob reads blocks f.node.Blocks[i:i+n], which are adjacent.
type blockJob struct {
	f    *readFile
	i, n int
}

// packBuf is a pack being filled or uploaded.
type packBuf struct {
	idx     int32 // registry pack index
	buf     []byte
	chunks  []Chunk
	entries []int32 // registry chunk index of each of chunks
	ix      indexScratch
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

// pendingChunk is a record a worker has ready for the packer: its bytes
// are records[off:off+Length] of the worker's batch.
type pendingChunk struct {
	c     Chunk
	entry int32
	off   int
}

// addBatch appends a worker's records in one go, so that the chunks of
// one run of blocks lie next to each other in the pack and a restore can
// write them back in one piece.
func (p *packer) addBatch(ctx context.Context, records []byte, batch []pendingChunk) error {
	if len(batch) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range batch {
		if err := p.addLocked(ctx, records[b.off:b.off+int(b.c.Length)], b.c, b.entry); err != nil {
			return err
		}
	}
	if len(p.cur.buf) >= p.size {
		return p.sendLocked(ctx)
	}
	return nil
}

func (p *packer) addLocked(ctx context.Context, record []byte, c Chunk, entry int32) error {
	if p.cur == nil {
		select {
		case pb := <-p.free:
			if pb == nil {
				pb = &packBuf{buf: largeBuffer(p.cap)[:0]}
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
		cap:  r.packSize + runBlocksFor(r.blockSize)*(r.blockSize+r.crypt.chunkOverhead()),
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
			if f.vanished {
				continue
			}
			filesRead.Add(1)
			fjobs := f.jobs(runBlocksFor(r.blockSize))
			for _, j := range fjobs {
				for _, b := range f.node.Blocks[j.i : j.i+j.n] {
					n := blockLen(f.st.Size, b.Index, r.blockSize)
					prog.bytes.Add(n)
					bytesRead.Add(n)
				}
			}
			if len(fjobs) == 0 {
				unix.Close(f.fd)
				continue
			}
			f.pending.Store(int64(len(fjobs)))
			ra := readahead{f: f, jobs: fjobs, bs: r.blockSize}
			for k, j := range fjobs {
				ra.advance(k)
				select {
				case jobs <- j:
				case <-ctx.Done():
					// Workers drain queued jobs; close what they never see.
					if f.pending.Add(-int64(len(fjobs)-k)) == 0 {
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
	// A failed worker stopped reading jobs: close the files of the jobs
	// still queued (the dispatcher closed jobs before Wait returned).
	for job := range jobs {
		if job.f.pending.Add(-1) == 0 {
			unix.Close(job.f.fd)
		}
	}
	// Keep one pack buffer for the list parts (writeParts).
	for len(pk.free) > 0 {
		if pb := <-pk.free; pb != nil && reg.spare == nil {
			reg.spare = pb.buf[:0]
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
		if f.live && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) {
			f.vanished = true // deleted (or renamed away) since the walk
			return nil
		}
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != f.st.Ino {
		unix.Close(fd)
		switch {
		case !f.live:
			return fmt.Errorf("%s: replaced while snapshotting: %w", f.path, ErrChanged)
		case err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG:
			f.vanished = true // no longer a regular file
			return nil
		}
		// Replaced by another file (renamed over it): read that one, all
		// of it, with its own metadata.
		fd, err = openBeneath(root, f.path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			if err = unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
				unix.Close(fd)
				err = unix.ENOENT
			}
		}
		if err != nil {
			f.vanished = true
			return nil
		}
		n := nodeFromStat(&st)
		f.node.Mode, f.node.UID, f.node.GID, f.node.Mtime, f.node.Ctime, f.node.Inode = n.Mode, n.UID, n.GID, n.Mtime, n.Ctime, n.Inode
		f.node.Size, f.st = uint64(st.Size), statEntryOf(&st)
		if xs, xerr := readXattrs("", fd); xerr == nil {
			f.node.Xattrs = xs
		}
		f.only, f.base = nil, nil
		f.replaced = true
	}
	blocks, err := dataExtents(fd, int64(f.st.Size), r.blockSize)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	f.fd = fd
	f.node.Blocks = mergeBlocks(blocks, f.only, f.base, numBlocks(f.st.Size, r.blockSize))
	if f.only == nil {
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	}
	return nil
}

// mergeBlocks returns the block list of a file being read: the data
// blocks to read (holeRef until read; data lists runs of them),
// restricted to the ranges only if set, and base's blocks outside those
// ranges and below nb. data, only and base are sorted.
func mergeBlocks(data [][2]uint64, only [][2]uint64, base []BlockRef, nb uint64) []BlockRef {
	read := data
	if only != nil {
		read = intersect(data, only)
	}
	n := len(base)
	for _, d := range read {
		n += int(d[1] - d[0] + 1)
	}
	out := make([]BlockRef, 0, n)
	inOnly := func(b uint64, k *int) bool { // k advances: b only grows
		if only == nil {
			return true
		}
		for *k < len(only) && only[*k][1] < b {
			*k++
		}
		return *k < len(only) && only[*k][0] <= b
	}
	i, k := 0, 0
	flushBase := func(below uint64) {
		for ; i < len(base) && base[i].Index < below; i++ {
			if b := base[i]; b.Index < nb && !inOnly(b.Index, &k) {
				out = append(out, b)
			}
		}
	}
	for _, d := range read {
		flushBase(d[0])
		for b := d[0]; b <= d[1]; b++ {
			out = append(out, BlockRef{Index: b, Chunk: holeRef})
		}
		for i < len(base) && base[i].Index <= d[1] {
			i++ // replaced by the blocks read
		}
	}
	flushBase(^uint64(0))
	return out
}

// intersect returns the blocks in both sorted lists of inclusive runs.
func intersect(a, b [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
		if lo <= hi {
			out = append(out, [2]uint64{lo, hi})
		}
		if a[i][1] < b[j][1] {
			i++
		} else {
			j++
		}
	}
	return out
}

// createReadahead is how far ahead of the workers the dispatcher asks
// the kernel to start reading a file's runs. The workers read each run
// with one blocking pread, two of them on two cores: when a ChangeSource
// names many small scattered ranges (pgbench's changed pages of a large
// table), every pread waited for the disk alone, one 16 KiB read at a
// time per worker (measured: a final snapshot of a 1.8 GB PostgreSQL
// volume after pgbench -c 2 -t 2000 spent 2.9 worker-seconds of its
// 1.9 s in 5154 preads of 24 KiB on average). With the runs ahead
// advised, the kernel has them in flight together and the preads find
// them in the page cache.
const createReadahead = 32 << 20

// readahead advises the kernel of a file's runs ahead of the workers
// (posix_fadvise WILLNEED starts reading them without waiting).
type readahead struct {
	f      *readFile
	jobs   []blockJob
	bs     int
	next   int   // first run not advised
	ahead  int64 // bytes advised and not yet handed to a worker
	handed int   // runs handed to workers
}

// advance is called before run k is handed to a worker: it keeps up to
// createReadahead bytes of the following runs advised.
func (ra *readahead) advance(k int) {
	for ; ra.handed < k; ra.handed++ {
		if ra.handed < ra.next {
			_, n := ra.jobs[ra.handed].span(ra.bs, ra.f.st.Size)
			ra.ahead -= n
		}
	}
	for ra.next < len(ra.jobs) && (ra.next <= k || ra.ahead < createReadahead) {
		off, n := ra.jobs[ra.next].span(ra.bs, ra.f.st.Size)
		// Only a hint: an error changes nothing but the speed.
		_ = unix.Fadvise(ra.f.fd, off, n, unix.FADV_WILLNEED)
		ra.ahead += n
		ra.next++
	}
}

// span is the byte range of the file that run j reads.
func (j blockJob) span(bs int, size uint64) (off, n int64) {
	refs := j.f.node.Blocks[j.i : j.i+j.n]
	first, last := refs[0].Index, refs[len(refs)-1].Index
	return int64(first) * int64(bs), int64(last-first)*int64(bs) + int64(blockLen(size, last, bs))
}

// jobs cuts the blocks to read into runs of adjacent blocks.
func (f *readFile) jobs(runBlocks int) []blockJob {
	var out []blockJob
	bl := f.node.Blocks
	for i := 0; i < len(bl); {
		if bl[i].Chunk != holeRef {
			i++
			continue
		}
		j := i + 1
		for j < len(bl) && j-i < runBlocks && bl[j].Chunk == holeRef && bl[j].Index == bl[j-1].Index+1 {
			j++
		}
		out = append(out, blockJob{f: f, i: i, n: j - i})
		i = j
	}
	return out
}

func (r *Repo) blockWorker(ctx context.Context, jobs <-chan blockJob, reg *registry, pk *packer, prog *progress, newChunks, newBytes *atomic.Uint64) error {
	bs := r.blockSize
	runBlocks := runBlocksFor(bs)
	buf := largeBuffer(runBlocks * bs)
	zbuf := make([]byte, 0, bs+bs/4+1024)
	w := &runBatch{records: largeBuffer(runBlocks * (bs + sealOverhead))[:0], id: make([]byte, 32)}
	h := r.crypt.newHasher()
	cp, err := newCompressor(r.codec)
	if err != nil {
		return err
	}
	defer cp.close()
	// After another worker failed, keep draining so every file gets
	// closed; a worker that fails returns at once (cancelling ctx) and
	// readBlocks closes what is left in jobs.
	for job := range jobs {
		var err error
		if ctx.Err() == nil {
			err = r.doRun(ctx, job, buf, zbuf, w, h, cp, reg, pk, prog, newChunks, newBytes)
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

// doRun reads the adjacent blocks of job with one pread, then hashes
// each and stores the ones the store lacks.
// runBatch holds the records of one run until they go to the packer.
type runBatch struct {
	records []byte
	batch   []pendingChunk
	id      []byte // the chunk ID being sealed (see sealChunk)
}

func (r *Repo) doRun(ctx context.Context, job blockJob, buf, zbuf []byte, w *runBatch, h *blake3.Hasher, cp *compressor,
	reg *registry, pk *packer, prog *progress, newChunks, newBytes *atomic.Uint64) error {
	w.records, w.batch = w.records[:0], w.batch[:0]
	f, refs := job.f, job.f.node.Blocks[job.i:job.i+job.n]
	bs := uint64(r.blockSize)
	first := refs[0].Index
	total := (refs[len(refs)-1].Index-first)*bs + blockLen(f.st.Size, refs[len(refs)-1].Index, r.blockSize)
	if err := preadFull(f.fd, buf[:total], int64(first*bs)); err != nil {
		return fmt.Errorf("reading %s: %w", f.path, err)
	}
	for k := range refs {
		ref := &refs[k]
		n := blockLen(f.st.Size, ref.Index, r.blockSize)
		off := (ref.Index - first) * bs
		data := buf[off : off+n]
		prog.done.Add(n)
		if allZero(data) {
			continue // a hole: nothing stored
		}
		id := sumID(h, data)
		idx, mine := reg.claim(id, uint32(n))
		ref.Chunk = uint32(idx)
		if !mine {
			continue
		}
		c := Chunk{ID: id, RawLength: uint32(n)}
		stored, codec := cp.compress(zbuf, data)
		c.Codec = codec
		at := len(w.records)
		copy(w.id, id[:])
		w.records = r.crypt.sealChunk(w.records, stored, w.id)
		c.Length = uint32(len(w.records) - at)
		w.batch = append(w.batch, pendingChunk{c: c, entry: idx, off: at})
		newChunks.Add(1)
		newBytes.Add(n)
	}
	return pk.addBatch(ctx, w.records, w.batch)
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
	if err := r.putPack(ctx, id, pb.buf, pb.chunks, false, ixPrefix, &pb.ix); err != nil {
		return err
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
