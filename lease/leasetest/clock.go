package leasetest

import (
	"context"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
)

var _ lease.Clock = (*Clock)(nil)

// Clock is a fake monotonic clock. Time moves only when Advance is called,
// when Run's ticker moves it, or, for a skip clock, when someone waits.
type Clock struct {
	mu     sync.Mutex
	now    time.Duration
	skip   bool
	timers []timer
	wake   chan struct{} // closed and replaced whenever a timer is added
}

type timer struct {
	at time.Duration
	ch chan struct{}
}

// NewClock returns a clock that moves only by Advance (or Run).
func NewClock() *Clock { return &Clock{wake: make(chan struct{})} }

// NewSkipClock returns a clock on which waiting takes no real time: After(d)
// moves the clock forward by d at once. Meant for one goroutine at a time.
func NewSkipClock() *Clock { return &Clock{skip: true, wake: make(chan struct{})} }

// Now implements lease.Clock.
func (c *Clock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements lease.Clock.
func (c *Clock) After(d time.Duration) <-chan struct{} {
	c.mu.Lock()
	ch := make(chan struct{})
	c.timers = append(c.timers, timer{at: c.now + d, ch: ch})
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	if c.skip {
		c.Advance(d)
	} else {
		c.fire()
	}
	return ch
}

// Advance moves the clock forward by d and fires the timers that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
	c.fire()
}

func (c *Clock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at <= c.now {
			close(t.ch)
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// BlockUntil waits (in real time) until at least n timers are pending,
// that is until n goroutines wait on the clock.
func (c *Clock) BlockUntil(n int) {
	for {
		c.mu.Lock()
		pending, wake := len(c.timers), c.wake
		c.mu.Unlock()
		if pending >= n {
			return
		}
		<-wake
	}
}

// Run advances the clock by step every real interval until ctx is done,
// so that goroutines waiting on it make progress at a fast, steady rate.
func (c *Clock) Run(ctx context.Context, step, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Advance(step)
		}
	}
}
