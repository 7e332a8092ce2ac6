package lease_test

import (
	"context"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/lease/leasetest"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"github.com/portvol/portvol/transfer/s3"
)

// The protocol against every store of the conformance suite: the local
// directory store and a real S3 server (versitygw, or the server named by
// PORTVOL_TEST_S3_*).

func TestLocaldir(t *testing.T) {
	leasetest.Run(t, func(t *testing.T) transfer.ObjectStore {
		st, err := localdir.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	leasetest.Run(t, func(t *testing.T) transfer.ObjectStore {
		st, err := s3.New(context.Background(), s3.Options{
			Endpoint:  srv.Endpoint,
			Region:    srv.Region,
			Bucket:    srv.Bucket,
			Prefix:    srv.Prefix(t),
			AccessKey: srv.AccessKey,
			SecretKey: transfer.Secret(srv.SecretKey),
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
