package s3_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
)

// A 4 GiB head.json on the real server (its posix backend's file made
// sparse, so the test stays cheap) is refused from the response's length:
// the error names the key and the bound, and the body is not read.
func TestS3LoadHugeRecord(t *testing.T) {
	srv := s3test.Start(t)
	srv.RequireLocal(t)
	prefix := srv.Prefix(t)
	st := open(t, options(srv, prefix))
	ctx := context.Background()
	key := "volumes/v/head.json"
	if err := st.Put(ctx, key, bytes.NewReader([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(srv.DataDir(), srv.Bucket, prefix, filepath.FromSlash(key))
	if err := os.Truncate(p, 4<<30); err != nil {
		t.Fatalf("growing the object's file behind the server: %v", err)
	}
	if oi, err := st.Stat(ctx, key); err != nil || oi.Size != 4<<30 {
		t.Fatalf("the server does not serve the grown object: %+v, %v", oi, err)
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := st.Load(ctx, key, 4096)
	if !errors.Is(err, transfer.ErrTooLarge) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("Load of a 4 GiB record: %v; want ErrTooLarge naming the key and the bound", err)
	}
	_, err = transfer.ReadAll(ctx, st, key, 4096)
	if !errors.Is(err, transfer.ErrTooLarge) {
		t.Fatalf("ReadAll of a 4 GiB record: %v; want ErrTooLarge", err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("refusing a 4 GiB record allocated %d bytes", grew)
	}
}
