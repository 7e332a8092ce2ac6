package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// Backend is the shared store as the driver uses it: the objects, the
// snapshots in them and the leases on them. cmd/portvol opens it (it alone
// knows concrete stores and where the key comes from).
type Backend struct {
	Store     transfer.ObjectStore
	Snapshots *snapshot.Repo
	Leases    *lease.Manager
}

// Intervals of the background loops.
const (
	maxConnectWait = 30 * time.Second // between attempts to open the store
	connectTimeout = 30 * time.Second // bound on one attempt
	recoverEvery   = time.Minute      // re-try leases left to resume
	purgeEvery     = time.Hour        // trash purge
	maintainEvery  = time.Hour        // prune, on one host at a time
)

// Connect opens the store in the background, retrying until it succeeds,
// then resumes what this host was doing before it stopped (leases held,
// final snapshots pending, restores) and purges the store's trash every
// hour. Call it once, after Reconcile.
func (d *Driver) Connect() {
	d.goBackground(d.followStandby)
	d.goBackground(func(ctx context.Context) {
		wait := d.retryBase
		var first sync.Once
		tried := func() { first.Do(func() { close(d.firstTry) }) }
		defer tried()
		for {
			cctx, cancel := context.WithTimeout(ctx, connectTimeout)
			b, err := d.connect(cctx)
			cancel()
			if err == nil {
				d.backend.Store(b)
				d.connErr.Store(nil)
				tried()
				d.log.Info("connected to the store")
				break
			}
			if ctx.Err() != nil {
				return
			}
			msg := err.Error()
			if prev := d.connErr.Load(); prev == nil || *prev != msg {
				entry := d.log.WithError(err).WithField("retry_in", wait.String())
				if isConfigError(err) {
					entry.Error("cannot use the store: fix the configuration and restart portvol; meanwhile mounts fail and volume listings come from this host's records")
				} else {
					entry.Warn("store unreachable; retrying in the background (mounts fail meanwhile)")
				}
			}
			d.connErr.Store(&msg)
			tried()
			if sleepCtx(ctx, wait) != nil {
				return
			}
			wait = min(2*wait, maxConnectWait)
		}
		d.recoverAll(ctx)
		d.purgeStoreTrash(ctx)
		recoverT, purgeT := time.NewTicker(recoverEvery), time.NewTicker(purgeEvery)
		defer recoverT.Stop()
		defer purgeT.Stop()
		maintainT := time.NewTicker(maintainEvery)
		defer maintainT.Stop()
		var maint *prune.Maintainer // one per process: it remembers what it saw of the lease
		for {
			select {
			case <-ctx.Done():
				return
			case <-recoverT.C:
				d.recoverAll(ctx)
			case <-purgeT.C:
				d.purgeStoreTrash(ctx)
			case <-maintainT.C:
				maint = d.maintain(ctx, maint)
			}
		}
	})
}

// isConfigError reports errors that retrying will not fix.
func isConfigError(err error) bool {
	for _, e := range []error{snapshot.ErrWrongKey, snapshot.ErrKeyRequired, snapshot.ErrNotEncrypted,
		snapshot.ErrBadKey, snapshot.ErrConfigMismatch, snapshot.ErrUnsupportedVersion, transfer.ErrPermanent,
		transfer.ErrWrongStore} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// store returns the backend, or an ErrUnavailable error that says why
// there is none yet. Right after the start it waits (up to ctx) for the
// first attempt to open the store.
func (d *Driver) store(ctx context.Context) (*Backend, error) {
	if b := d.backend.Load(); b != nil {
		return b, nil
	}
	select {
	case <-d.firstTry:
	case <-ctx.Done():
	}
	if b := d.backend.Load(); b != nil {
		return b, nil
	}
	why := "connecting"
	if msg := d.connErr.Load(); msg != nil {
		why = *msg
	}
	return nil, errorf(ErrUnavailable, "store unreachable: %s; portvol keeps retrying in the background — retry once the store is back (docker volume ls and inspect answer from this host's records meanwhile)", why)
}

// storeNow is store without waiting for the first attempt to connect, for
// calls that must answer at once (Get, List, status).
func (d *Driver) storeNow() (*Backend, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return d.store(ctx)
}

// purgeStoreTrash deletes trash entries older than the retention.
func (d *Driver) purgeStoreTrash(ctx context.Context) {
	b := d.backend.Load()
	if b == nil {
		return
	}
	purged, err := purgeTrash(ctx, b, time.Now().Add(-d.trashRetention))
	for _, e := range purged {
		d.log.WithField("volume", e.Name).WithField("removed_at", e.Removed.Format(time.RFC3339)).Info("purged a removed volume from the store's trash")
	}
	if err != nil && ctx.Err() == nil {
		d.log.WithError(err).Warn("purging the store's trash failed; retrying in an hour")
	}
}

// maintain runs one background prune if no other host is pruning (the
// maintenance lease, package prune) and returns the Maintainer to reuse.
func (d *Driver) maintain(ctx context.Context, m *prune.Maintainer) *prune.Maintainer {
	b := d.backend.Load()
	if b == nil {
		return m
	}
	if m == nil {
		var err error
		if m, err = prune.NewMaintainer(b.Snapshots, b.Store, d.hostID, b.Leases.TTL(), prune.Options{}); err != nil {
			d.log.WithError(err).Warn("background prune disabled")
			return nil
		}
	}
	res, err := m.RunOnce(ctx)
	switch {
	case errors.Is(err, prune.ErrBusy):
		d.log.WithError(err).Debug("background prune skipped")
	case err != nil && ctx.Err() == nil:
		d.log.WithError(err).Warn("background prune failed; retrying in an hour")
	case err == nil:
		d.log.WithField("deleted_packs", res.Deleted).WithField("deleted_bytes", res.DeletedBytes).
			WithField("marked_packs", res.Marked).WithField("revived_packs", res.Revived).Info("background prune done")
	}
	return m
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errUnavailable wraps a store error seen during a call.
func errUnavailable(name string, err error) error {
	return &kindError{kind: ErrUnavailable, cause: err, msg: fmt.Sprintf("volume %q: store unreachable: %s; retry once the store is back", name, err)}
}
