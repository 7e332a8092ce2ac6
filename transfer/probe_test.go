package transfer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

// ignoring is a store that accepts conditional writes and ignores their
// conditions, as some S3-compatible services do.
type ignoring struct {
	transfer.ObjectStore
	ignoreCreate, ignoreReplace bool
	createOnMatch               bool // If-Match of a missing key creates it
}

func (s *ignoring) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if !s.ignoreCreate {
		return s.ObjectStore.PutIfAbsent(ctx, key, data)
	}
	return s.overwrite(ctx, key, data)
}

func (s *ignoring) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if s.createOnMatch {
		if _, err := s.Stat(ctx, key); errors.Is(err, transfer.ErrNotExist) {
			return s.overwrite(ctx, key, data)
		}
	}
	if !s.ignoreReplace {
		return s.ObjectStore.PutIfMatch(ctx, key, data, etag)
	}
	return s.overwrite(ctx, key, data)
}

func (s *ignoring) overwrite(ctx context.Context, key string, data []byte) (string, error) {
	if err := s.Put(ctx, key, strings.NewReader(string(data)), int64(len(data))); err != nil {
		return "", err
	}
	oi, err := s.Stat(ctx, key)
	return oi.ETag, err
}

func TestProbeConditional(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	if err := transfer.ProbeConditional(ctx, st); err != nil {
		t.Fatalf("probe of a store that honours conditions: %v", err)
	}
	if keys := countKeys(t, st, transfer.ProbePrefix); keys != 0 {
		t.Errorf("the probe left %d objects behind", keys)
	}
	for _, c := range []struct {
		name                    string
		create, update, onMatch bool
		want                    string
	}{
		{"ignores If-None-Match", true, false, false, "a create with If-None-Match: * of an object that exists must be refused with 412 Precondition Failed, but the store answered success"},
		{"ignores If-Match", false, true, false, "a replace with If-Match"},
		{"If-Match creates", false, false, true, "of an object that does not exist must be refused with 412 Precondition Failed, but the store answered success, creating it"},
	} {
		err := transfer.ProbeConditional(ctx, &ignoring{ObjectStore: memstore.New(), ignoreCreate: c.create, ignoreReplace: c.update, createOnMatch: c.onMatch})
		if !errors.Is(err, transfer.ErrConditionalIgnored) || !errors.Is(err, transfer.ErrPermanent) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrConditionalIgnored saying %q", c.name, err, c.want)
		}
	}
	// A store that cannot be written proves nothing: its own error comes back.
	err := transfer.ProbeConditional(ctx, readOnly{memstore.New()})
	if err == nil || errors.Is(err, transfer.ErrConditionalIgnored) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("probe of a read-only store: %v", err)
	}
}

type readOnly struct{ transfer.ObjectStore }

func (readOnly) PutIfAbsent(context.Context, string, []byte) (string, error) {
	return "", errors.New("read-only store")
}

func countKeys(t *testing.T, st transfer.ObjectStore, prefix string) int {
	t.Helper()
	n := 0
	if err := st.List(context.Background(), prefix, func(transfer.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
