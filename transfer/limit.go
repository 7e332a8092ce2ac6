package transfer

import (
	"context"
	"io"
	"sync"
	"time"
)

// Limiter caps the combined bandwidth of everything read through it, in
// bytes per second. One Limiter can be shared by several Groups, so a host
// keeps one cap however many volumes move at once. A nil *Limiter does not
// limit. It is safe for concurrent use.
type Limiter struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64 // may go negative: a debt that later readers wait out
	last   time.Time
}

// limiterChunk is the most a limited reader passes on per Read, so that
// waits stay short and readers sharing a Limiter interleave smoothly.
const limiterChunk = 64 << 10

// NewLimiter returns a Limiter for bytesPerSecond, or nil (no limit) if
// bytesPerSecond <= 0.
func NewLimiter(bytesPerSecond int64) *Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	rate := float64(bytesPerSecond)
	// A tenth of a second of burst, but at least one chunk, so a single
	// Read never waits longer than it must.
	burst := max(rate/10, limiterChunk)
	return &Limiter{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// Wait blocks until n bytes may pass, or ctx is done.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	debt := l.tokens
	l.mu.Unlock()
	if debt >= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(time.Duration(-debt / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// Give back what was not used, so a cancelled reader does not
		// slow the others down.
		l.mu.Lock()
		l.tokens += float64(n)
		l.mu.Unlock()
		return ctx.Err()
	}
}

// Reader returns r limited by l. Reads fail with ctx's error once ctx is
// done. With a nil l it returns r unchanged.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	return &limitedReader{ctx: ctx, l: l, r: r}
}

type limitedReader struct {
	ctx context.Context
	l   *Limiter
	r   io.Reader
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > limiterChunk {
		p = p[:limiterChunk]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.Wait(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
