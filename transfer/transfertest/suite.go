package transfertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
)

// NewStore returns a fresh, empty store for one subtest. It registers any
// cleanup with t.
type NewStore func(t *testing.T) transfer.ObjectStore

// Run runs every conformance test against stores made by newStore; each
// subtest gets its own store.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s transfer.ObjectStore)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"ShortSource", testShortSource},
		{"Ranges", testRanges},
		{"NotExist", testNotExist},
		{"ETagsAgree", testETagsAgree},
		{"List", testList},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"Conditional", testConditional},
		{"Bounds", testBounds},
		{"CreateRace", testCreateRace},
		{"ReplaceRace", testReplaceRace},
		{"CounterLinearizable", testCounter},
		{"CancelBefore", testCancelBefore},
		{"CancelDuringPut", testCancelDuringPut},
		{"CancelDuringGet", testCancelDuringGet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomData returns n reproducible pseudo-random bytes.
func randomData(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// onlyReader hides every interface but io.Reader (no Seeker, no ReaderAt,
// no WriterTo), as a pipe from a compressor would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func put(t *testing.T, s transfer.ObjectStore, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctxFor(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func getAll(t *testing.T, s transfer.ObjectStore, key string, off, length int64) []byte {
	t.Helper()
	rc, err := s.Get(ctxFor(t), key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): reading body: %v", key, off, length, err)
	}
	return b
}

func sum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, n, err
}

func wantNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, transfer.ErrNotExist) {
		t.Fatalf("%s: got error %v, want one matching transfer.ErrNotExist", what, err)
	}
}

func wantPrecondition(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, transfer.ErrPrecondition) {
		t.Fatalf("%s: got error %v, want one matching transfer.ErrPrecondition", what, err)
	}
}

func listKeys(t *testing.T, s transfer.ObjectStore, prefix string) []transfer.ObjectInfo {
	t.Helper()
	var out []transfer.ObjectInfo
	if err := s.List(ctxFor(t), prefix, func(oi transfer.ObjectInfo) error {
		out = append(out, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}
