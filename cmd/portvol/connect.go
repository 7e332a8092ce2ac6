package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/guard"
	"github.com/portvol/portvol/transfer/meter"
)

// knownConditionalServices names S3 services known to honour conditional
// writes, for the error that refuses one that does not.
const knownConditionalServices = "AWS S3 (since November 2024), recent MinIO releases and versitygw 1.8, which portvol's tests run against"

// connectOptions say how a command uses its store.
type connectOptions struct {
	// create allows making the store: its directory or bucket and its
	// configuration (with init's settings). Only portvol init, and a
	// plugin on its very first start, create.
	create bool
	init   snapshot.InitOptions
	// write: the command will write (leases, snapshots), so the store must
	// first prove it honours conditional writes.
	write bool
	repo  snapshot.Options
	// reports, if set, hear about every request to the store (metrics).
	reports meter.Reports
}

// connection is an open, identified store.
type connection struct {
	// store is the store guarded by its identity: a "does not exist" from
	// it is checked against the store's config first.
	store transfer.ObjectStore
	raw   transfer.ObjectStore // store without the identity guard, for the probe
	repo  *snapshot.Repo
	id    string // the store's store_id
}

// connect opens the store at raw and proves it is a portvol store: it
// exists (or is created, with o.create), has a configuration, and — for
// writers — honours conditional writes. Errors say what is wrong and
// what to do; none contains a credential.
func connect(ctx context.Context, raw string, o connectOptions) (*connection, error) {
	where := redactURL(raw)
	st, err := openMeteredStore(ctx, raw, nil, o.create, o.reports)
	if errors.Is(err, transfer.ErrStoreMissing) && o.create {
		return nil, fmt.Errorf("%w: create the bucket, or let portvol create it (drop create_bucket=false)", err)
	}
	if errors.Is(err, transfer.ErrStoreMissing) {
		return nil, storeMissing(where, err)
	}
	if err != nil {
		return nil, err
	}
	if o.create {
		if err := snapshot.Init(ctx, st, o.init); err != nil {
			return nil, fmt.Errorf("store %s: %w", where, err)
		}
	}
	id, err := snapshot.ReadStoreID(ctx, st)
	if errors.Is(err, snapshot.ErrNotInitialized) {
		return nil, storeMissing(where, fmt.Errorf("it has no portvol configuration (no object \"config\"): %w", transfer.ErrStoreMissing))
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", where, err)
	}
	if o.write {
		if err := proveConditional(ctx, st, where); err != nil {
			return nil, err
		}
	}
	guarded := guard.New(st, identityCheck(st, id, where))
	// Every writer honours prune's collections (prune/doc.go).
	o.repo.Fossils = prune.Fossils(guarded)
	repo, err := snapshot.Open(ctx, guarded, o.repo)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", where, err)
	}
	return &connection{store: guarded, raw: st, repo: repo, id: id}, nil
}

// proveConditional has the store at where prove that it honours
// conditional writes, which a writer needs before its first write.
func proveConditional(ctx context.Context, st transfer.ObjectStore, where string) error {
	if err := transfer.ProbeConditional(ctx, st); err != nil {
		if errors.Is(err, transfer.ErrConditionalIgnored) {
			return fmt.Errorf("store %s cannot keep two hosts from holding one volume: %w; portvol needs an S3 service that honours If-None-Match and If-Match on PUT — known to: %s", where, err, knownConditionalServices)
		}
		return fmt.Errorf("store %s: %w", where, err)
	}
	return nil
}

// storeMissing explains a store that is not there.
func storeMissing(where string, err error) error {
	return fmt.Errorf("store %s: %w: check --store (PORTVOL_STORE) and that the file system or bucket holding it is there; to make a new store, run portvol init --store URL", where, err)
}

// identityCheck is the guard's check: the store still has the
// configuration it had when this process joined it.
func identityCheck(st transfer.ObjectStore, want, where string) guard.Check {
	return func(ctx context.Context) error {
		id, err := snapshot.ReadStoreID(ctx, st)
		switch {
		case errors.Is(err, snapshot.ErrNotInitialized):
			return fmt.Errorf("store %s (store id %s) is missing or empty: is the file system holding it mounted, are its bucket and prefix there? Nothing is dropped meanwhile: %w", where, want, transfer.ErrStoreMissing)
		case err != nil:
			return fmt.Errorf("store %s: cannot confirm its identity: %w", where, err)
		case id != want:
			return fmt.Errorf("store %s is now store %s, not store %s, which this process joined: another store was put at its address; restore the original, or check --store: %w", where, id, want, transfer.ErrWrongStore)
		}
		return nil
	}
}
