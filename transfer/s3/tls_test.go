package s3_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/s3"
)

// Over HTTPS a private CA is trusted only through CAFile; without it the
// error is permanent and says what to give.
func TestS3TLSWithCAFile(t *testing.T) {
	srv := s3test.StartTLS(t)
	ctx := context.Background()
	opts := options(srv, srv.Prefix(t))
	_, err := s3.New(ctx, opts)
	if !errors.Is(err, transfer.ErrPermanent) || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("HTTPS to a private CA without CAFile: %v, want a permanent error mentioning ca_file", err)
	}
	opts.CAFile = srv.CAFile
	st := open(t, opts)
	data := randomBytes(3 << 20)
	if err := st.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put over HTTPS: %v", err)
	}
	checkContent(t, st, "k", data)
	etag, err := st.PutIfAbsent(ctx, "head.json", []byte(`{"g":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutIfMatch(ctx, "head.json", []byte(`{"g":2}`), etag); err != nil {
		t.Fatalf("PutIfMatch over HTTPS: %v", err)
	}
}
