package snapshot

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// registry is the set of chunks a Create run can refer to: the parent's,
// those in packs left by interrupted runs, and the ones this run uploads.
// Indexes are stable; the parent's chunks keep their parent indexes.
type registry struct {
	mu     sync.Mutex
	chunks []Chunk
	byID   map[ID]int32
	packs  []ID // zero until the pack is uploaded
}

func newRegistry(parent *Manifest) *registry {
	r := &registry{byID: make(map[ID]int32)}
	if parent != nil {
		r.chunks = append(r.chunks, parent.Chunks...)
		r.packs = append(r.packs, parent.Packs...)
		for i, c := range parent.Chunks {
			r.byID[c.ID] = int32(i)
		}
	}
	return r
}

// addIndex makes the chunks of an already uploaded pack known.
func (r *registry) addIndex(ix *packIndex) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := int32(-1)
	for _, c := range ix.Chunks {
		if _, ok := r.byID[c.ID]; ok {
			continue
		}
		if p < 0 {
			r.packs = append(r.packs, ix.Pack)
			p = int32(len(r.packs) - 1)
		}
		c.Pack = uint32(p)
		r.chunks = append(r.chunks, c)
		r.byID[c.ID] = int32(len(r.chunks) - 1)
	}
}

// claim returns the index of chunk id, and whether the caller must upload
// it (it was not known before).
func (r *registry) claim(id ID, raw uint32) (int32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.byID[id]; ok {
		return i, false
	}
	r.chunks = append(r.chunks, Chunk{ID: id, RawLength: raw})
	i := int32(len(r.chunks) - 1)
	r.byID[id] = i
	return i, true
}

func (r *registry) place(i int32, c Chunk) {
	r.mu.Lock()
	r.chunks[i] = c
	r.mu.Unlock()
}

func (r *registry) newPack() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packs = append(r.packs, ID{})
	return int32(len(r.packs) - 1)
}

func (r *registry) setPack(i int32, id ID) {
	r.mu.Lock()
	r.packs[i] = id
	r.mu.Unlock()
}

// group runs goroutines; the first error cancels the context of all.
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelCauseFunc
	ctx    context.Context
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancelCause(ctx)
	return &group{cancel: cancel, ctx: ctx}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.cancel(err)
		}
	}()
}

// Wait waits for all goroutines and returns the first error, or the
// reason the parent context ended.
func (g *group) Wait() error {
	g.wg.Wait()
	err := context.Cause(g.ctx)
	g.cancel(nil)
	return err
}

// Progress reports how far a Create, Restore or Verify has come.
type Progress struct {
	Phase       string // "scan", "upload", "download", "verify", "finish"
	Files       uint64 // files to read (Create) or write (Restore)
	Bytes       uint64 // bytes to read, or to write
	BytesDone   uint64
	Transferred uint64 // bytes sent to or received from the store
	Reused      uint64 // bytes taken from the previous copy (Restore)
}

type progress struct {
	phase                                       atomic.Value
	files, bytes, done, transferred, reusedByte atomic.Uint64
	fn                                          func(Progress)
	stop                                        chan struct{}
	stopped                                     chan struct{}
}

// startProgress calls fn from one goroutine every interval until stop.
func startProgress(fn func(Progress), phase string) *progress {
	p := &progress{fn: fn}
	p.phase.Store(phase)
	if fn == nil {
		return p
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(p.snapshot())
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progress) snapshot() Progress {
	return Progress{
		Phase: p.phase.Load().(string), Files: p.files.Load(), Bytes: p.bytes.Load(),
		BytesDone: p.done.Load(), Transferred: p.transferred.Load(), Reused: p.reusedByte.Load(),
	}
}

func (p *progress) setPhase(s string) { p.phase.Store(s) }

// finish stops the ticker and reports the final state once.
func (p *progress) finish() {
	if p.fn == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.setPhase("finish")
	p.fn(p.snapshot())
}
