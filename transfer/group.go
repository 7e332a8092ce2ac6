package transfer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// GroupOptions configure a Group. The zero value is usable.
type GroupOptions struct {
	// Concurrency is the number of transfers in flight; default 4.
	Concurrency int

	// Limiter caps the bandwidth of the group's transfers; nil means no
	// cap. Share one Limiter between groups for a host-wide cap.
	Limiter *Limiter

	// Progress, if set, is called with the bytes moved so far: at most
	// every ProgressInterval while transfers run, and once more from Wait
	// with the final count. Calls never overlap.
	Progress func(Progress)

	// ProgressInterval is the shortest time between Progress calls;
	// default 200ms.
	ProgressInterval time.Duration

	// Total is the expected number of bytes, if the caller knows it before
	// submitting everything. Progress reports the larger of Total and the
	// sum of the sizes submitted so far.
	Total int64
}

// Progress is a snapshot of a Group's byte counts.
type Progress struct {
	Done  int64 // bytes read from Put sources or Get bodies
	Total int64 // bytes expected (see GroupOptions.Total)
}

// Group runs Put and Get jobs against one store with bounded concurrency,
// a shared bandwidth cap and progress reporting. Submitting blocks while
// all slots are busy, which keeps memory bounded when the caller produces
// data faster than the store takes it.
//
// The first job that fails cancels the others; later submissions return
// that error at once, and Wait returns it. A Group is used by one
// submitting goroutine at a time and cannot be reused after Wait.
type Group struct {
	store ObjectStore
	opts  GroupOptions
	ctx   context.Context
	stop  context.CancelFunc
	slots chan struct{}
	wg    sync.WaitGroup

	errOnce sync.Once
	err     error

	done      atomic.Int64
	submitted atomic.Int64

	progMu   sync.Mutex
	lastProg time.Time
}

// NewGroup returns a Group whose jobs run under ctx.
func NewGroup(ctx context.Context, store ObjectStore, opts GroupOptions) *Group {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 200 * time.Millisecond
	}
	ctx, stop := context.WithCancel(ctx)
	return &Group{
		store: store,
		opts:  opts,
		ctx:   ctx,
		stop:  stop,
		slots: make(chan struct{}, opts.Concurrency),
	}
}

// Put uploads size bytes from r to key. It returns once the job has
// started (or the group has failed); the job reads r until it finishes, so
// r must stay valid until Wait returns. If r is an io.Seeker a retrying
// store can rewind it; progress then counts each byte once.
func (g *Group) Put(key string, r io.Reader, size int64) error {
	return g.submit(size, func(ctx context.Context) error {
		return g.store.Put(ctx, key, g.wrap(ctx, r, size >= 0), size)
	})
}

// PutBytes uploads data to key. data must not change until Wait returns.
func (g *Group) PutBytes(key string, data []byte) error {
	return g.Put(key, bytes.NewReader(data), int64(len(data)))
}

// Get downloads length bytes of key from offset off (length < 0: to the
// end) and passes the body to fn, which must consume it before returning.
// fn runs on a job goroutine, so concurrent fns must not share unguarded
// state; writing to disjoint ranges of one file with WriteAt is fine.
func (g *Group) Get(key string, off, length int64, fn func(io.Reader) error) error {
	return g.submit(max(length, 0), func(ctx context.Context) error {
		rc, err := g.store.Get(ctx, key, off, length)
		if err != nil {
			return err
		}
		defer rc.Close()
		r := g.wrap(ctx, rc, length >= 0)
		if err := fn(r); err != nil {
			return fmt.Errorf("get %q: %w", key, err)
		}
		if c := counterOf(r); length > c.high {
			// The object ended before the range did: expect no more.
			g.submitted.Add(c.high - length)
		}
		return nil
	})
}

// Go runs fn as a job of the group, for work that is neither a plain Put
// nor a Get (a conditional write, a Stat). Its bytes are not counted.
func (g *Group) Go(fn func(ctx context.Context) error) error {
	return g.submit(0, fn)
}

// Wait waits for every submitted job and returns the first error. It
// reports progress one last time.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.stop()
	g.report(true)
	return g.err
}

func (g *Group) submit(size int64, job func(ctx context.Context) error) error {
	// A failed group refuses new work even when a slot is free.
	if g.ctx.Err() != nil {
		return g.failure()
	}
	select {
	case g.slots <- struct{}{}:
	case <-g.ctx.Done():
		return g.failure()
	}
	g.submitted.Add(size)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() { <-g.slots }()
		if err := job(g.ctx); err != nil {
			g.fail(err)
		}
		g.report(false)
	}()
	return nil
}

func (g *Group) fail(err error) {
	g.errOnce.Do(func() {
		g.err = err
		g.stop()
	})
}

// failure is the error to return to a submitter of a stopped group.
func (g *Group) failure() error {
	// The group's context is cancelled after g.err is set, so it is
	// visible here; without a job error the parent context was done.
	g.errOnce.Do(func() { g.err = context.Cause(g.ctx) })
	return g.err
}

func (g *Group) add(n int64, unknownSize bool) {
	g.done.Add(n)
	if unknownSize {
		g.submitted.Add(n)
	}
	g.report(false)
}

func (g *Group) report(final bool) {
	if g.opts.Progress == nil {
		return
	}
	if !final && !g.progMu.TryLock() {
		return // someone is reporting right now; the next one catches up
	}
	if final {
		g.progMu.Lock()
	}
	defer g.progMu.Unlock()
	now := time.Now()
	if !final && now.Sub(g.lastProg) < g.opts.ProgressInterval {
		return
	}
	g.lastProg = now
	g.opts.Progress(Progress{Done: g.done.Load(), Total: max(g.opts.Total, g.submitted.Load())})
}

// wrap counts and limits the bytes read from r. It keeps r's io.Seeker so a
// retrying store can rewind, and counts bytes read again after a rewind
// only once.
func (g *Group) wrap(ctx context.Context, r io.Reader, sizeKnown bool) io.Reader {
	c := &counter{ctx: ctx, g: g, r: r, unknownSize: !sizeKnown}
	if s, ok := r.(io.Seeker); ok {
		if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
			c.base = pos
			return &seekCounter{counter: c, s: s}
		}
	}
	return c
}

type counter struct {
	ctx         context.Context
	g           *Group
	r           io.Reader
	unknownSize bool
	base        int64 // offset of the first byte in the underlying reader
	pos, high   int64 // relative position and high-water mark
}

func (c *counter) Read(p []byte) (int, error) {
	if c.g.opts.Limiter != nil && len(p) > limiterChunk {
		p = p[:limiterChunk]
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.pos += int64(n)
		if c.pos > c.high {
			c.g.add(c.pos-c.high, c.unknownSize)
			c.high = c.pos
		}
		if werr := c.g.opts.Limiter.Wait(c.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func counterOf(r io.Reader) *counter {
	if sc, ok := r.(*seekCounter); ok {
		return sc.counter
	}
	return r.(*counter)
}

type seekCounter struct {
	*counter
	s io.Seeker
}

func (c *seekCounter) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		offset += c.base
	}
	abs, err := c.s.Seek(offset, whence)
	if err != nil {
		return abs - c.base, err
	}
	c.pos = abs - c.base
	return c.pos, nil
}
