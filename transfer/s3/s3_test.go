package s3_test

import (
	"context"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/s3"
	"github.com/portvol/portvol/transfer/transfertest"
)

func options(srv *s3test.Server, prefix string) s3.Options {
	return s3.Options{
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		Bucket:    srv.Bucket,
		Prefix:    prefix,
		AccessKey: srv.AccessKey,
		SecretKey: transfer.Secret(srv.SecretKey),
	}
}

func open(t testing.TB, opts s3.Options) *s3.Store {
	t.Helper()
	st, err := s3.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestS3Conformance(t *testing.T) {
	srv := s3test.Start(t)
	transfertest.Run(t, func(t *testing.T) transfer.ObjectStore {
		return open(t, options(srv, srv.Prefix(t)))
	})
}
