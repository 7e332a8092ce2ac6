package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/internal/metrics"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
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

// maxKeyFile bounds a key file: 32 bytes in base64 with a newline is 45.
const maxKeyFile = 4 << 10

// readKeyFile reads the snapshot encryption key; "" means no encryption.
func readKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := readBoundedFile(path, maxKeyFile)
	if err != nil {
		return nil, keyFileError(path, err)
	}
	key, err := snapshot.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("--encryption-key-file %s: %w (create one with: head -c 32 /dev/urandom | base64 > %s)", path, err, path)
	}
	return key, nil
}

// readBoundedFile reads a small local file whole, refusing one larger
// than limit bytes (a key file option pointing at a disk image or a
// device must not make the process read gigabytes).
func readBoundedFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than the %d bytes a key file may have", path, limit)
	}
	return data, nil
}

// backendOpener returns the driver's Connect function: open the store —
// creating it only if this host may (its very first start, with an empty
// state directory, until it joins a store) —, check the key against it,
// prove it honours conditional writes, check it is the store this host
// joined (remembering it on the first connect), and start leasing as
// hostID. The store the driver gets is guarded: a store that vanishes or
// is replaced later answers "unavailable", never "does not exist".
//
// The store's requests are reported to m, and opened is set to each store
// connected, for the reachability probe.
func backendOpener(o serveOptions, hostID string, key []byte, db *metadata.DB, log logrus.FieldLogger, m *metrics.Metrics, opened *atomic.Pointer[transfer.ObjectStore]) func(context.Context) (*driver.Backend, error) {
	shown := redactURL(o.store)
	return func(ctx context.Context) (*driver.Backend, error) {
		joined, err := db.JoinedStore(ctx)
		if err != nil {
			return nil, err
		}
		c, err := connect(ctx, o.store, connectOptions{
			create: joined.MayCreate, init: snapshot.InitOptions{Key: key}, write: true,
			repo: snapshot.Options{Key: key, RestorePrivileged: o.restorePrivileged}, reports: m.StoreReports(),
		})
		if err != nil {
			// Opening the store (a bucket check, a missing directory) is
			// not metered: count what says the store cannot be used.
			if !isKeyError(err) && (errors.Is(err, transfer.ErrStoreMissing) || transfer.Retryable(err)) {
				m.StoreAnswered(false)
			}
			return nil, keyError(err)
		}
		opened.Store(&c.store)
		if joined.ID != "" && joined.ID != c.id && o.joinStore != c.id {
			return nil, fmt.Errorf("store %s is store %s, but this host joined store %s, where its volumes' records are: check --store (PORTVOL_STORE) and what is mounted or configured there; to move this host to store %s on purpose, start it with --join-store %s (PORTVOL_JOIN_STORE) — volumes the new store lacks are then forgotten here, and copies with unpublished changes kept under %s: %w",
				shown, c.id, joined.ID, c.id, c.id, filepath.Join(o.stateDir, "kept"), transfer.ErrWrongStore)
		}
		if joined.ID != c.id {
			if err := db.JoinStore(ctx, c.id); err != nil {
				return nil, err
			}
			log.WithField("store_id", c.id).WithField("previous_store_id", joined.ID).Info("joined the store")
		}
		leases, err := lease.New(c.store, lease.Options{Host: hostID, TTL: o.leaseTTL})
		if err != nil {
			return nil, err
		}
		return &driver.Backend{Store: c.store, Snapshots: c.repo, Leases: leases}, nil
	}
}

// keyError adds what to do about a key that does not fit the store;
// connect's errors already name the store.
func keyError(err error) error {
	if errors.Is(err, snapshot.ErrWrongKey) {
		return fmt.Errorf("%w: give every host the key file the store was first used with (--encryption-key-file)", err)
	}
	return err
}
