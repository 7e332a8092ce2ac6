package leasetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// audit records every conditional write a store applied, with the writer
// and the clock reading taken before the call (so at or before the write
// took effect).
type audit struct {
	inner transfer.ObjectStore
	clock lease.Clock

	mu     sync.Mutex
	writes []write
}

type write struct {
	host  string
	start time.Duration
	prev  string // ETag replaced, "" for a create
	etag  string
	rec   lease.Record
}

// as returns a view of the store whose writes are attributed to host.
func (a *audit) as(host string) transfer.ObjectStore {
	return &auditView{ObjectStore: a.inner, a: a, host: host}
}

type auditView struct {
	transfer.ObjectStore
	a    *audit
	host string
}

func (v *auditView) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	start := v.a.clock.Now()
	etag, err := v.ObjectStore.PutIfAbsent(context.WithoutCancel(ctx), key, data)
	if err == nil {
		err = v.a.add(v.host, start, "", etag, data)
	}
	return lostIfCanceled(ctx, etag, err)
}

func (v *auditView) PutIfMatch(ctx context.Context, key string, data []byte, prev string) (string, error) {
	start := v.a.clock.Now()
	etag, err := v.ObjectStore.PutIfMatch(context.WithoutCancel(ctx), key, data, prev)
	if err == nil {
		err = v.a.add(v.host, start, prev, etag, data)
	}
	return lostIfCanceled(ctx, etag, err)
}

// lostIfCanceled turns the outcome of a write the caller gave up on into a
// lost response. Writes run to completion without the caller's
// cancellation so that the audit knows whether they were applied: a
// cancelled request to a remote store may be applied anyway, and an applied
// write the audit did not see would break the ETag chain. The caller still
// sees what it would see on a real network: an error, applied or not.
func lostIfCanceled(ctx context.Context, etag string, err error) (string, error) {
	if cerr := ctx.Err(); cerr != nil {
		return "", cerr
	}
	return etag, err
}

func (a *audit) add(host string, start time.Duration, prev, etag string, data []byte) error {
	rec, err := lease.Decode(data)
	if err != nil {
		return fmt.Errorf("audit: a host wrote an undecodable record: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes = append(a.writes, write{host: host, start: start, prev: prev, etag: etag, rec: rec})
	return nil
}

// history returns the applied writes in the order they took effect, by
// following the ETag chain from the create: each conditional write names
// the version it replaced, and a version can be replaced only once.
func (a *audit) history() ([]write, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	byPrev := make(map[string]write)
	for _, w := range a.writes {
		if other, dup := byPrev[w.prev]; dup {
			return nil, fmt.Errorf("two writes replaced version %q: by %s (seq %d) and %s (seq %d)",
				w.prev, other.host, other.rec.Seq, w.host, w.rec.Seq)
		}
		byPrev[w.prev] = w
	}
	var chain []write
	for cur := ""; ; {
		w, ok := byPrev[cur]
		if !ok {
			break
		}
		chain = append(chain, w)
		cur = w.etag
	}
	if len(chain) != len(a.writes) {
		return nil, fmt.Errorf("ETag chain covers %d of %d applied writes: the store's ETags from writes and loads disagree", len(chain), len(a.writes))
	}
	return chain, nil
}
