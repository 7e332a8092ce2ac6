package lease

import (
	"context"
	"time"
)

// Clock is the monotonic clock a Manager judges time by. Only differences
// between two readings of the same Clock mean anything: readings are not
// wall time and are never written to the store or compared across hosts.
type Clock interface {
	// Now returns the time elapsed since an arbitrary fixed origin.
	Now() time.Duration
	// After returns a channel that receives once d has elapsed.
	After(d time.Duration) <-chan struct{}
}

// SystemClock returns a Clock on the process's monotonic clock: it does not
// jump when the wall clock is set.
func SystemClock() Clock { return systemClock{start: time.Now()} }

type systemClock struct{ start time.Time }

func (c systemClock) Now() time.Duration { return time.Since(c.start) }

func (c systemClock) After(d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(d, func() { close(ch) })
	return ch
}

// sleep waits d on clock c, or until ctx is done.
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}
