package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/portvol/portvol/transfer"
)

var _ transfer.ObjectStore = (*Store)(nil)

// Addressing selects how the bucket is named in requests.
type Addressing int

const (
	// AddressingAuto uses virtual-host style for AWS and path style for
	// other endpoints.
	AddressingAuto Addressing = iota
	// AddressingPath sends http://endpoint/bucket/key.
	AddressingPath
	// AddressingVirtual sends http://bucket.endpoint/key.
	AddressingVirtual
)

// DefaultEndpoint is AWS S3.
const DefaultEndpoint = "https://s3.amazonaws.com"

// Options configure a Store. Zero values mean the defaults.
type Options struct {
	// Endpoint is the service URL, e.g. "http://127.0.0.1:7070"; its
	// scheme selects TLS. Default DefaultEndpoint.
	Endpoint string
	// Region, e.g. "us-east-1"; empty lets the client discover it.
	Region string
	// Bucket is required.
	Bucket string
	// Prefix is prepended to every key; empty or ending in "/".
	Prefix string
	// Addressing is path or virtual-host style; default auto.
	Addressing Addressing
	// CAFile is a PEM file of extra certificate authorities to trust for
	// HTTPS, on top of the system's.
	CAFile string

	// AccessKey, SecretKey and SessionToken are static credentials. When
	// AccessKey is empty, the shared credentials file (CredentialsFile or
	// the AWS default, with Profile) and then the EC2/ECS/web-identity
	// IAM chain are tried.
	AccessKey       string
	SecretKey       transfer.Secret
	SessionToken    transfer.Secret
	CredentialsFile string
	Profile         string

	// NoCreateBucket makes New fail if the bucket is missing, with an
	// error matching transfer.ErrStoreMissing, instead of creating it.
	NoCreateBucket bool

	// MaxConcurrency bounds requests in flight; default 16.
	MaxConcurrency int
	// MaxSinglePut: objects up to this size go in one PUT; default 1 GiB,
	// at most 5 GiB. On a local versitygw one 1 GiB PUT ran 1.4x faster
	// than 64 MiB parts (BenchmarkS3), and a single PUT needs no buffer.
	MaxSinglePut int64
	// PartSize is the part size of larger objects; default 64 MiB.
	PartSize int64
	// PartConcurrency is the number of parts uploaded at once; default 4.
	PartConcurrency int
}

// Store is an S3 bucket (and prefix) as a transfer.ObjectStore. It is safe
// for concurrent use.
type Store struct {
	client *minio.Client
	core   minio.Core
	opts   Options
	slots  chan struct{}
}

// New connects to the bucket described by opts, creating the bucket if it
// is missing (unless NoCreateBucket). It fails with an error matching
// transfer.ErrPermanent for bad options, rejected credentials or a bucket
// it may not use.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultEndpoint
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = 16
	}
	if opts.MaxSinglePut <= 0 {
		opts.MaxSinglePut = 1 << 30
	}
	opts.MaxSinglePut = min(opts.MaxSinglePut, 5<<30) // S3's single PUT limit
	if opts.PartSize <= 0 {
		opts.PartSize = 64 << 20
	}
	opts.PartSize = min(max(opts.PartSize, 5<<20), 5<<30) // S3's part limits
	if opts.PartConcurrency <= 0 {
		opts.PartConcurrency = 4
	}
	if opts.Bucket == "" {
		return nil, permanent("no bucket given")
	}
	if opts.Prefix != "" && (!strings.HasSuffix(opts.Prefix, "/") || transfer.CheckKey(strings.TrimSuffix(opts.Prefix, "/")) != nil) {
		return nil, permanent(fmt.Sprintf("prefix %q: want slash-separated segments of [A-Za-z0-9._-] ending in \"/\"", opts.Prefix))
	}
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, permanent(fmt.Sprintf("endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", opts.Endpoint))
	}
	secure := u.Scheme == "https"
	tr, err := transport(opts.CAFile)
	if err != nil {
		return nil, err
	}
	lookup := map[Addressing]minio.BucketLookupType{
		AddressingAuto: minio.BucketLookupAuto, AddressingPath: minio.BucketLookupPath, AddressingVirtual: minio.BucketLookupDNS,
	}[opts.Addressing]
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentialsFor(opts),
		Secure:       secure,
		Transport:    tr,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   1, // transfer/retry is the one retry layer
	})
	if err != nil {
		return nil, permanent(fmt.Sprintf("endpoint %q: %s", opts.Endpoint, err))
	}
	s := &Store{client: client, core: minio.Core{Client: client}, opts: opts, slots: make(chan struct{}, opts.MaxConcurrency)}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func credentialsFor(opts Options) *credentials.Credentials {
	if opts.AccessKey != "" {
		return credentials.NewStaticV4(opts.AccessKey, opts.SecretKey.Reveal(), opts.SessionToken.Reveal())
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.FileAWSCredentials{Filename: opts.CredentialsFile, Profile: opts.Profile},
		&credentials.IAM{},
	})
}

// transport is tuned for few hosts and large bodies: many idle
// connections kept, large socket buffers, no compression, bounded waits
// for connecting and for response headers (the body itself is bounded by
// the caller's context).
func transport(caFile string) (*http.Transport, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, permanent(fmt.Sprintf("reading CA file: %s", err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, permanent(fmt.Sprintf("CA file %s holds no PEM certificate", caFile))
		}
		tlsConf.RootCAs = pool
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialAbortive,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
		DisableCompression:    true,
		TLSClientConfig:       tlsConf,
	}, nil
}

// dialAbortive dials with SO_LINGER 0, so closing a connection, which is
// how an upload is abandoned on cancellation, sends a reset instead of a
// clean end of stream. Some servers (versitygw 1.8) take a cleanly ended
// request body as complete and publish the truncated object.
func dialAbortive(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		_ = tc.SetLinger(0)
	}
	return c, err
}

func (s *Store) ensureBucket(ctx context.Context) error {
	// A one-key listing rather than HEAD: its error body names the
	// problem (InvalidAccessKeyId, SignatureDoesNotMatch, NoSuchBucket),
	// where HEAD only says 403 or 404.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var err error
	first := true
	for oi := range s.client.ListObjects(lctx, s.opts.Bucket, minio.ListObjectsOptions{Prefix: s.opts.Prefix, MaxKeys: 1}) {
		if first {
			// Only the first answer counts: after cancel the listing may
			// report the cancellation while fetching its next page.
			err, first = oi.Err, false
		}
		cancel() // one answer is enough; the loop drains the channel
	}
	if err == nil {
		return ctx.Err()
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.Code != "NoSuchBucket" {
		return s.translate("open bucket", "", err)
	}
	if s.opts.NoCreateBucket {
		return fmt.Errorf("S3 store: bucket %q does not exist at %s: %w", s.opts.Bucket, s.opts.Endpoint, transfer.ErrStoreMissing)
	}
	err = s.client.MakeBucket(ctx, s.opts.Bucket, minio.MakeBucketOptions{Region: s.opts.Region})
	if errors.As(err, &er) && er.Code == "BucketAlreadyOwnedByYou" {
		return nil // created concurrently
	}
	if err != nil {
		return fmt.Errorf("bucket %q does not exist and creating it failed: %w", s.opts.Bucket, s.translate("create bucket", "", err))
	}
	return nil
}

// acquire takes a request slot.
func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) release() { <-s.slots }

// String describes the store for logs, without credentials.
func (s *Store) String() string {
	return fmt.Sprintf("s3://%s/%s (endpoint %s)", s.opts.Bucket, s.opts.Prefix, s.opts.Endpoint)
}
