package prune

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// MaintenancePrefix is where maintenance leases live (lease.Options.Prefix).
const MaintenancePrefix = "maintenance/"

// maintenanceName is the lease's name under MaintenancePrefix.
const maintenanceName = "prune"

// Maintainer runs prune in the background, one host of a store at a time.
type Maintainer struct {
	repo   *snapshot.Repo
	store  transfer.ObjectStore
	leases *lease.Manager
	opts   Options
}

// NewMaintainer returns a Maintainer for host; leaseTTL is the maintenance
// lease's TTL (0: lease.DefaultTTL).
func NewMaintainer(repo *snapshot.Repo, store transfer.ObjectStore, host string, leaseTTL time.Duration, o Options) (*Maintainer, error) {
	lm, err := lease.New(store, lease.Options{Host: host, TTL: leaseTTL, Prefix: MaintenancePrefix})
	if err != nil {
		return nil, err
	}
	o.Host = host
	return &Maintainer{repo: repo, store: store, leases: lm, opts: o}, nil
}

// ErrBusy: another host holds the maintenance lease and is pruning.
var ErrBusy = errors.New("another host is pruning this store")

// RunOnce takes the maintenance lease (taking it over if its holder
// stopped renewing for a full TTL, as this host observed), prunes, and
// releases. It fails with ErrBusy if another host prunes now.
func (m *Maintainer) RunOnce(ctx context.Context) (Result, error) {
	l, err := m.leases.Takeover(ctx, maintenanceName, lease.TakeoverOptions{})
	var held *lease.HeldError
	if errors.As(err, &held) {
		return Result{}, fmt.Errorf("%w (%s holds the maintenance lease)", ErrBusy, held.Owner)
	}
	if err != nil {
		return Result{}, fmt.Errorf("maintenance lease: %w", err)
	}
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 1)
	go func() { kdone <- l.KeepAlive(kctx, nil) }()
	res, err := Run(ctx, m.repo, m.store, m.opts)
	stop()
	if kerr := <-kdone; kerr != nil && !errors.Is(kerr, context.Canceled) && err == nil {
		err = fmt.Errorf("maintenance lease: %w", kerr)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if rerr := l.Release(rctx); rerr != nil && err == nil {
		err = fmt.Errorf("releasing the maintenance lease: %w", rerr)
	}
	return res, err
}
