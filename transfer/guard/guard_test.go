package guard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/guard"
	"github.com/portvol/portvol/transfer/memstore"
	"github.com/portvol/portvol/transfer/transfertest"
)

// A guarded store whose check passes behaves as the store itself.
func TestConformance(t *testing.T) {
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore {
		return guard.New(memstore.New(), func(context.Context) error { return nil })
	})
}

// Once the check fails, no negative answer gets through: missing objects,
// refused replaces and empty listings all report the check's error, and
// answers that show the store is there pass unchecked.
func TestNegativeAnswersAreChecked(t *testing.T) {
	ctx := context.Background()
	var gone atomic.Bool
	var checks atomic.Int32
	st := guard.New(memstore.New(), func(context.Context) error {
		checks.Add(1)
		if gone.Load() {
			return fmt.Errorf("the store's config is gone: %w", transfer.ErrStoreMissing)
		}
		return nil
	})
	if err := st.Put(ctx, "a/x", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	etag, err := st.PutIfAbsent(ctx, "a/head", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	// While the check passes, a missing object is just missing.
	if _, _, err := st.Load(ctx, "a/none", 10); !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v", err)
	}
	if _, err := st.PutIfMatch(ctx, "a/head", []byte("2"), "stale"); !errors.Is(err, transfer.ErrPrecondition) {
		t.Fatalf("PutIfMatch with a stale ETag: %v", err)
	}
	before := checks.Load()
	if _, _, err := st.Load(ctx, "a/head", 10); err != nil {
		t.Fatal(err)
	}
	if err := st.List(ctx, "a/", func(transfer.ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if checks.Load() != before {
		t.Errorf("answers that found objects ran the check %d times", checks.Load()-before)
	}

	gone.Store(true)
	for name, err := range map[string]error{
		"Load":       func() error { _, _, err := st.Load(ctx, "a/none", 10); return err }(),
		"Get":        func() error { _, err := st.Get(ctx, "a/none", 0, -1); return err }(),
		"Stat":       func() error { _, err := st.Stat(ctx, "a/none"); return err }(),
		"PutIfMatch": func() error { _, err := st.PutIfMatch(ctx, "a/head", []byte("2"), "stale"); return err }(),
		"List":       st.List(ctx, "b/", func(transfer.ObjectInfo) error { return nil }),
	} {
		if !errors.Is(err, transfer.ErrStoreMissing) || errors.Is(err, transfer.ErrNotExist) || errors.Is(err, transfer.ErrPrecondition) {
			t.Errorf("%s on a store that fails its check: %v; want the check's error only", name, err)
		}
	}
	if _, err := st.PutIfMatch(ctx, "a/head", []byte("2"), etag); err != nil {
		t.Errorf("a replace that applies needs no check: %v", err)
	}
}
