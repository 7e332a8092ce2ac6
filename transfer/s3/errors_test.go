package s3

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/portvol/portvol/transfer"
)

func TestTranslate(t *testing.T) {
	c, err := minio.New("127.0.0.1:1", &minio.Options{Creds: credentials.NewStaticV4("AK", "s3cr3tv4lue", "")})
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{client: c, opts: Options{Bucket: "b", Endpoint: "http://127.0.0.1:1"}}
	resp := func(code string, status int) error {
		return minio.ErrorResponse{Code: code, StatusCode: status, Message: "msg"}
	}
	cases := []struct {
		err       error
		want      error // sentinel, or nil for transient
		retryable bool
		hint      string
	}{
		{resp("NoSuchKey", 404), transfer.ErrNotExist, false, ""},
		{resp("NotFound", 404), transfer.ErrNotExist, false, ""},
		{resp("NoSuchBucket", 404), transfer.ErrPermanent, false, "check the store URL"},
		{resp("PreconditionFailed", 412), transfer.ErrPrecondition, false, ""},
		{resp("ConditionalRequestConflict", 409), transfer.ErrPrecondition, false, ""},
		{resp("AccessDenied", 403), transfer.ErrPermanent, false, "bucket policy"},
		{resp("InvalidAccessKeyId", 403), transfer.ErrPermanent, false, "AWS_ACCESS_KEY_ID"},
		{resp("SignatureDoesNotMatch", 403), transfer.ErrPermanent, false, "AWS_SECRET_ACCESS_KEY"},
		{resp("RequestTimeTooSkewed", 403), transfer.ErrPermanent, false, "clock"},
		{resp("InvalidArgument", 400), transfer.ErrPermanent, false, ""},
		{resp("SlowDown", 503), nil, true, ""},
		{resp("InternalError", 500), nil, true, ""},
		{resp("RequestTimeout", 400), nil, true, ""},
		{resp("", 429), nil, true, ""},
		{&url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, nil, true, ""},
		{&url.Error{Op: "Put", URL: "http://x", Err: syscall.ECONNREFUSED}, nil, true, ""},
		// Dial and DNS failures say what to check, with the endpoint as the
		// user wrote it (url.Error would show the request URL, escaped).
		{&url.Error{Op: "Put", URL: "http://127.0.0.1:1/b/k%2F1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
			nil, true, "cannot connect to http://127.0.0.1:1: check endpoint= in the store URL, and that the S3 service runs"},
		{&url.Error{Op: "Put", URL: "http://x", Err: &net.DNSError{Name: "s3.example.invalid", Err: "no such host", IsNotFound: true}},
			nil, true, "cannot resolve the host of http://127.0.0.1:1: check endpoint= in the store URL and this host's DNS: no such host s3.example.invalid"},
		{resp("NoSuchBucket", 404), transfer.ErrStoreMissing, false, "does not exist"},
	}
	for _, c := range cases {
		got := s.translate("put", "k", c.err)
		if c.want != nil && !errors.Is(got, c.want) {
			t.Errorf("%v: got %v, want %v", c.err, got, c.want)
		}
		if transfer.Retryable(got) != c.retryable {
			t.Errorf("%v: Retryable(%v) = %v, want %v", c.err, got, !c.retryable, c.retryable)
		}
		if !strings.Contains(got.Error(), c.hint) || !strings.Contains(got.Error(), `put "k"`) {
			t.Errorf("%v: message %q, want the key and %q", c.err, got, c.hint)
		}
		if strings.Contains(got.Error(), "s3cr3tv4lue") {
			t.Errorf("message shows the secret: %q", got)
		}
	}
	if got := s.translate("put", "k", fmt.Errorf("x: %w", errors.New("y"))); got == nil {
		t.Error("translate dropped an error")
	}
}
