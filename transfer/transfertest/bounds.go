package transfertest

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer"
)

// maxLoad is the bound the other conformance tests give Load: more than
// any record they write.
const maxLoad = 1 << 20

// testBounds: Load and ReadAll refuse an object larger than the caller's
// bound with ErrTooLarge, naming the key and the bound, and read one at
// the bound exactly.
func testBounds(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	key := "bounds/rec.json"
	data := bytes.Repeat([]byte("x"), 1000)
	put(t, s, key, data)
	for _, limit := range []int64{0, 999} {
		_, _, err := s.Load(ctx, key, limit)
		if !errors.Is(err, transfer.ErrTooLarge) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), strconv.FormatInt(limit, 10)) {
			t.Errorf("Load of 1000 bytes with bound %d: %v; want ErrTooLarge naming the key and the bound", limit, err)
		}
		_, err = transfer.ReadAll(ctx, s, key, limit)
		if !errors.Is(err, transfer.ErrTooLarge) || !strings.Contains(err.Error(), key) {
			t.Errorf("ReadAll of 1000 bytes with bound %d: %v; want ErrTooLarge naming the key", limit, err)
		}
	}
	got, _, err := s.Load(ctx, key, 1000)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load at the bound: %d bytes, %v", len(got), err)
	}
	got, err = transfer.ReadAll(ctx, s, key, 1000)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll at the bound: %d bytes, %v", len(got), err)
	}
	_, _, err = s.Load(ctx, "bounds/none", 10)
	wantNotExist(t, "Load of a missing key with a bound", err)
	_, err = transfer.ReadAll(ctx, s, "bounds/none", 10)
	wantNotExist(t, "ReadAll of a missing key", err)
	// The bound is not an error in itself: a retrying store must not
	// repeat it.
	if transfer.Retryable(transfer.TooLarge("load", key, 2, 1)) {
		t.Error("ErrTooLarge counted as retryable")
	}
}
