package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/guard"
	"github.com/portvol/portvol/transfer/memstore"
)

// A store that is emptied under a holder (an S3 prefix wiped, an NFS
// share unmounted: every record "missing") never fences the holder or
// lets anyone acquire anew, once the store is guarded by its identity: the
// holder's renewals fail as "store missing" until the store is back, and
// then succeed.
func TestVanishedStoreNeverFences(t *testing.T) {
	ctx := context.Background()
	raw := memstore.New()
	var gone atomic.Bool
	st := guard.New(raw, func(context.Context) error {
		if gone.Load() {
			return fmt.Errorf("test store emptied: %w", transfer.ErrStoreMissing)
		}
		return nil
	})
	m, err := lease.New(st, lease.Options{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Acquire(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	head, _, err := raw.Load(ctx, lease.HeadKey("v"), lease.MaxRecordSize)
	if err != nil {
		t.Fatal(err)
	}
	// The store loses everything, as one that is not mounted shows.
	if err := raw.Delete(ctx, lease.HeadKey("v")); err != nil {
		t.Fatal(err)
	}
	gone.Store(true)
	err = l.Renew(ctx)
	if err == nil || errors.Is(err, lease.ErrFenced) || !errors.Is(err, transfer.ErrStoreMissing) {
		t.Fatalf("Renew with the store gone: %v; want a store-missing error, not a fence", err)
	}
	other, err := lease.New(st, lease.Options{Host: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Acquire(ctx, "v"); err == nil {
		t.Fatal("another host acquired the volume in a store that is gone")
	}
	if o, err := other.Inspect(ctx, "v"); err == nil || o.Exists {
		t.Fatalf("Inspect with the store gone: %+v, %v; want an error, not an absent record", o, err)
	}
	// The store comes back as it was: the holder carries on.
	if _, err := raw.PutIfAbsent(ctx, lease.HeadKey("v"), head); err != nil {
		t.Fatal(err)
	}
	gone.Store(false)
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("Renew once the store is back: %v", err)
	}
}
