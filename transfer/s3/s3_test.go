package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
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

// Objects above MaxSinglePut go up in parts, from seekable and streaming
// sources alike.
func TestS3Multipart(t *testing.T) {
	srv := s3test.Start(t)
	opts := options(srv, srv.Prefix(t))
	opts.MaxSinglePut = 8 << 20
	opts.PartSize = 5 << 20
	st := open(t, opts)
	ctx := context.Background()
	data := randomBytes(23<<20 + 11)
	sources := map[string]io.Reader{
		"readerat": bytes.NewReader(data),
		"stream":   io.MultiReader(bytes.NewReader(data)),
	}
	for name, src := range sources {
		if err := st.Put(ctx, name, src, int64(len(data))); err != nil {
			t.Fatalf("multipart Put from %s: %v", name, err)
		}
		checkContent(t, st, name, data)
		got := getRange(t, st, name, 7<<20, 3<<20)
		if !bytes.Equal(got, data[7<<20:10<<20]) {
			t.Fatalf("ranged Get across parts of %s returned wrong bytes", name)
		}
	}
}

func getRange(t *testing.T, st transfer.ObjectStore, key string, off, n int64) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Errors a user can fix are permanent, say what to check, and never show
// the secret.
func TestS3Errors(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	srv.RequireLocal(t)

	badSecret := options(srv, "")
	badSecret.SecretKey = "wrong-secret-value-1234"
	_, err := s3.New(ctx, badSecret)
	wantPermanent(t, "wrong secret key", err, "secret key does not match")
	if strings.Contains(err.Error(), "wrong-secret-value-1234") || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("error shows a secret: %v", err)
	}

	badKey := options(srv, "")
	badKey.AccessKey = "nobody"
	_, err = s3.New(ctx, badKey)
	wantPermanent(t, "unknown access key", err, "AWS_ACCESS_KEY_ID")

	missing := options(srv, "")
	missing.Bucket = "no-such-bucket"
	missing.NoCreateBucket = true
	_, err = s3.New(ctx, missing)
	if !errors.Is(err, transfer.ErrStoreMissing) || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Errorf("missing bucket without creation: %v; want ErrStoreMissing naming the bucket", err)
	}

	created := options(srv, "p/")
	created.Bucket = "created-by-portvol"
	st := open(t, created)
	if err := st.Put(ctx, "k", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatalf("Put into a bucket New created: %v", err)
	}

	tlsToPlain := options(srv, "")
	tlsToPlain.Endpoint = strings.Replace(srv.Endpoint, "http://", "https://", 1)
	_, err = s3.New(ctx, tlsToPlain)
	wantPermanent(t, "https to a plain HTTP server", err, "http://")

	for _, bad := range []s3.Options{
		{Endpoint: "ftp://x", Bucket: "b"},
		{Endpoint: srv.Endpoint, Bucket: ""},
		{Endpoint: srv.Endpoint, Bucket: "b", Prefix: "no-slash"},
		{Endpoint: srv.Endpoint, Bucket: "b", Prefix: "../x/"},
	} {
		if _, err := s3.New(ctx, bad); !errors.Is(err, transfer.ErrPermanent) {
			t.Errorf("New(%+v): %v, want a permanent error", bad, err)
		}
	}

	// A server that is down is transient: retrying may help.
	down := s3test.Start(t)
	downOpts := options(down, "")
	stDown := open(t, downOpts)
	down.Kill(t)
	_, err = stDown.Stat(ctx, "k")
	if err == nil || !transfer.Retryable(err) {
		t.Fatalf("Stat against a stopped server: %v, want a transient error", err)
	}
}

func wantPermanent(t *testing.T, what string, err error, hint string) {
	t.Helper()
	if !errors.Is(err, transfer.ErrPermanent) || transfer.Retryable(err) {
		t.Fatalf("%s: %v, want a permanent error", what, err)
	}
	if !strings.Contains(err.Error(), hint) {
		t.Fatalf("%s: %v, want a message mentioning %q", what, err, hint)
	}
}

// Opening a store whose prefix holds several objects (every store after
// its first use) succeeds: the probe reads one key and stops.
func TestS3OpenNonEmptyPrefix(t *testing.T) {
	srv := s3test.Start(t)
	opts := options(srv, srv.Prefix(t))
	st := open(t, opts)
	for _, k := range []string{"a", "b/c", "d"} {
		if err := st.Put(context.Background(), k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if _, err := s3.New(context.Background(), opts); err != nil {
			t.Fatalf("reopening a store with objects: %v", err)
		}
	}
}
