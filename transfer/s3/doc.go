// Package s3 is a transfer.ObjectStore on S3 and S3-compatible services
// (AWS S3, MinIO, Ceph RGW, versitygw), built on minio-go.
//
// It owns: the S3 client, its HTTP transport, credentials, bucket
// creation, conditional writes (If-None-Match: * and If-Match), and the
// translation of S3 errors into transfer's sentinels. Nothing else in
// portvol imports minio-go. It must not know the snapshot format, leases
// or how the store URL is spelled (cmd/portvol parses it into Options).
//
// Errors: NoSuchKey and 404 become transfer.ErrNotExist; 412
// PreconditionFailed and 409 ConditionalRequestConflict become
// transfer.ErrPrecondition; AccessDenied, InvalidAccessKeyId,
// SignatureDoesNotMatch, NoSuchBucket, TLS failures and other 4xx become
// transfer.ErrPermanent with a hint at what to check. 5xx, SlowDown,
// RequestTimeout, 408, 429 and connection errors stay transient, for
// transfer/retry to repeat; minio-go's own retries are switched off so
// that only one layer retries.
//
// Throughput: payloads are sent unsigned (UNSIGNED-PAYLOAD) over HTTP and
// HTTPS alike, so no SHA-256 is computed over the data, and Content-MD5 is
// never sent; integrity is the snapshot format's job (every chunk is
// hashed). Objects up to Options.MaxSinglePut go in one PUT, streamed from
// the caller's reader without a copy; larger ones in parts of
// Options.PartSize, up to Options.PartConcurrency at once (read in
// parallel when the source is an io.ReaderAt).
//
// Abandoned uploads: connections close with SO_LINGER 0, so a cancelled or
// crashed upload ends in a TCP reset. versitygw 1.8 takes a cleanly closed
// unsigned body as complete and would publish the truncated object; the
// reset makes it fail the request instead (TestS3ClientCrash). Requests in flight are bounded by
// Options.MaxConcurrency; a Get body holds its slot until it is closed.
package s3
