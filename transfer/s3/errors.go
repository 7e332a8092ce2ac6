package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/portvol/portvol/transfer"
)

func permanent(msg string) error {
	return fmt.Errorf("S3 store: %s: %w", msg, transfer.ErrPermanent)
}

// translate maps a minio-go error to transfer's vocabulary, naming the
// operation and key. Messages never contain credentials.
func (s *Store) translate(op, key string, err error) error {
	if err == nil {
		return nil
	}
	what := op
	if key != "" {
		what = fmt.Sprintf("%s %q", op, key)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return s.translateTransport(what, err)
	}
	code := er.Code
	switch {
	case code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && (code == "" || code == "NotFound")):
		return fmt.Errorf("%s: %w", what, transfer.ErrNotExist)
	case er.StatusCode == http.StatusPreconditionFailed || code == "PreconditionFailed" ||
		code == "ConditionalRequestConflict":
		return fmt.Errorf("%s: %s: %w", what, code, transfer.ErrPrecondition)
	case code == "SlowDown" || er.StatusCode >= 500 || code == "RequestTimeout" ||
		er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests ||
		code == "OperationAborted":
		// Transient: the service is busy, broken for now, or timed us out.
		return fmt.Errorf("%s: S3 %s (HTTP %d): %s", what, code, er.StatusCode, er.Message)
	}
	hint := s.hint(code)
	if code == "NoSuchBucket" {
		return fmt.Errorf("%s: S3 %s (HTTP %d): %s%s: %w: %w", what, code, er.StatusCode, er.Message, hint, transfer.ErrStoreMissing, transfer.ErrPermanent)
	}
	return fmt.Errorf("%s: S3 %s (HTTP %d): %s%s: %w", what, code, er.StatusCode, er.Message, hint, transfer.ErrPermanent)
}

// hint tells the user what to check for a permanent S3 error.
func (s *Store) hint(code string) string {
	switch code {
	case "InvalidAccessKeyId", "XAdminUserNotFound":
		return "; the access key is not known to " + s.opts.Endpoint + ": check AWS_ACCESS_KEY_ID or the credentials file"
	case "SignatureDoesNotMatch":
		return "; the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY or the credentials file (and the region)"
	case "AccessDenied", "AllAccessDisabled":
		if s.anonymous() {
			return "; no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a credentials file, or run with an IAM role"
		}
		return fmt.Sprintf("; the server refused these credentials for bucket %q: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the credentials file) and the bucket policy or IAM permissions", s.opts.Bucket)
	case "NoSuchBucket":
		return fmt.Sprintf("; bucket %q does not exist at %s: check the store URL", s.opts.Bucket, s.opts.Endpoint)
	case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
		return "; the session token is expired or invalid: refresh AWS_SESSION_TOKEN or the credentials"
	case "RequestTimeTooSkewed":
		return "; this host's clock differs too much from the server's: fix the clock (NTP)"
	case "AuthorizationHeaderMalformed", "InvalidRegion", "IllegalLocationConstraintException":
		return "; the region is wrong: set region= in the store URL to the bucket's region"
	case "PermanentRedirect":
		return "; the bucket lives in another region or endpoint: set region= or endpoint= in the store URL"
	case "BucketAlreadyExists":
		return fmt.Sprintf("; bucket %q belongs to another account: choose another bucket name", s.opts.Bucket)
	}
	return ""
}

func (s *Store) anonymous() bool {
	v, err := s.client.GetCreds()
	return err != nil || v.AccessKeyID == ""
}

// dnsCause is a DNS error without the repetition of the host name.
func dnsCause(e *net.DNSError) error {
	if e.IsNotFound {
		return fmt.Errorf("no such host %s", e.Name)
	}
	return e
}

// translateTransport classifies errors below HTTP: TLS trust and protocol
// mismatches are permanent, everything else (refused, reset, timeouts,
// DNS) transient.
func (s *Store) translateTransport(what string, err error) error {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		return fmt.Errorf("%s: TLS certificate of %s not trusted: give ca_file= in the store URL or fix the endpoint: %w: %w",
			what, s.opts.Endpoint, transfer.ErrPermanent, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s: %s speaks plain HTTP: use an http:// endpoint: %w", what, s.opts.Endpoint, transfer.ErrPermanent)
	}
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return fmt.Errorf("%s: cannot resolve the host of %s: check endpoint= in the store URL and this host's DNS: %w", what, s.opts.Endpoint, dnsCause(dns))
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("%s: cannot connect to %s: check endpoint= in the store URL, and that the S3 service runs and is reachable from this host: %w", what, s.opts.Endpoint, op.Err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error repeats the whole URL (escaped); the cause is what matters.
		return fmt.Errorf("%s: %s: %w", what, s.opts.Endpoint, ue.Err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
