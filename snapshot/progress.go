package snapshot

import (
	"sync/atomic"
	"time"
)

// Progress reports how far a Create, Restore or Verify has come.
type Progress struct {
	Phase     string // Create: "scan", "upload"; Restore: "scan", "local", "download"; then "finish"
	Files     uint64 // files to read (Create) or write (Restore)
	Bytes     uint64 // bytes to read, or to write: so far, until TotalKnown
	BytesDone uint64
	// TotalKnown says Bytes is final. Create finds each file's data blocks
	// when it opens the file, so its total grows while it reads; a
	// percentage of a growing total would go backwards.
	TotalKnown  bool
	Transferred uint64 // bytes sent to or received from the store
	Reused      uint64 // bytes taken from the previous copy (Restore)
}

type progress struct {
	phase                                       atomic.Value
	files, bytes, done, transferred, reusedByte atomic.Uint64
	totalKnown                                  atomic.Bool
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
		TotalKnown: p.totalKnown.Load(),
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
