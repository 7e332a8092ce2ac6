package lease_test

import (
	"context"
	"testing"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

// TestPrefix: a Manager with another prefix keeps its records there, apart
// from the volumes' leases of the same name, and refuses a malformed prefix.
func TestPrefix(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	m, err := lease.New(st, lease.Options{Host: "h1", Prefix: "maintenance/"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Acquire(ctx, "prune")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "maintenance/prune/head.json"); err != nil {
		t.Errorf("record not under the prefix: %v", err)
	}
	var keys []string
	if err := st.List(ctx, "volumes/", func(oi transfer.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("a maintenance lease wrote under volumes/: %v", keys)
	}
	vm, err := lease.New(st, lease.Options{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Acquire(ctx, "prune"); err != nil {
		t.Errorf("a volume named like the maintenance lease is not independent: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"/x/", "x", "../", "a b/"} {
		if _, err := lease.New(st, lease.Options{Host: "h1", Prefix: bad}); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}
