package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/internal/metrics"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// maxMountWait keeps a Mount's wait for another host inside the 25 s
// portvol gives a Mount: dockerd caps plugin calls at 30 s after
// `docker plugin enable` (its default --timeout).
const maxMountWait = 28 * time.Second

// checkOwnershipFlags validates --lease-ttl, --mount-wait and
// --trash-retention.
func (o *serveOptions) checkOwnershipFlags() error {
	switch {
	case o.leaseTTL < time.Second || o.leaseTTL > time.Hour:
		return fmt.Errorf("--lease-ttl %s: use 1s to 1h (the time another host waits before it may take over a silent host's volume)", o.leaseTTL)
	case o.leaseTTL%time.Millisecond != 0:
		return fmt.Errorf("--lease-ttl %s: use whole milliseconds", o.leaseTTL)
	case o.mountWait < 0 || o.mountWait >= maxMountWait:
		return fmt.Errorf("--mount-wait %s: use 0 to %s — dockerd gives a plugin call at most 30 s (docker plugin enable --timeout) and a Mount also needs time to restore and bind after waiting", o.mountWait, maxMountWait-time.Second)
	case o.trashRetention <= 0:
		return fmt.Errorf("--trash-retention %s: use a positive duration such as 168h", o.trashRetention)
	}
	return nil
}

// readKeyFile reads the snapshot encryption key; "" means no encryption.
func readKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, keyFileError(path, err)
	}
	key, err := snapshot.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("--encryption-key-file %s: %w (create one with: head -c 32 /dev/urandom | base64 > %s)", path, err, path)
	}
	return key, nil
}

// backendOpener returns the driver's Connect function: open the store,
// initialize it for snapshots if it is new (encrypted if a key is given),
// check the key against it, and start leasing as hostID.
// The store's reports go to m, and opened is set to each store opened,
// for the reachability probe.
func backendOpener(o serveOptions, hostID string, key []byte, m *metrics.Metrics, opened *atomic.Pointer[transfer.ObjectStore]) func(context.Context) (*driver.Backend, error) {
	shown := redactURL(o.store)
	return func(ctx context.Context) (*driver.Backend, error) {
		st, err := openMeteredStore(ctx, o.store, nil, m.StoreReports())
		if err != nil {
			m.StoreAnswered(false)
			return nil, err
		}
		opened.Store(&st)
		if err := snapshot.Init(ctx, st, snapshot.InitOptions{Key: key}); err != nil {
			return nil, keyError(shown, err)
		}
		repo, err := snapshot.Open(ctx, st, snapshot.Options{Key: key})
		if err != nil {
			return nil, keyError(shown, err)
		}
		leases, err := lease.New(st, lease.Options{Host: hostID, TTL: o.leaseTTL})
		if err != nil {
			return nil, err
		}
		return &driver.Backend{Store: st, Snapshots: repo, Leases: leases}, nil
	}
}

// keyError says which store and what to do about a key that does not fit.
func keyError(store string, err error) error {
	switch {
	case errors.Is(err, snapshot.ErrWrongKey):
		return fmt.Errorf("store %s: %w: give every host the key file the store was first used with (--encryption-key-file)", store, err)
	case errors.Is(err, snapshot.ErrKeyRequired), errors.Is(err, snapshot.ErrNotEncrypted):
		return fmt.Errorf("store %s: %w", store, err)
	}
	return fmt.Errorf("store %s: %w", store, err)
}
