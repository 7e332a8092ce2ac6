// Package retry is a transfer.ObjectStore decorator that repeats operations
// failing with transient errors (5xx, SlowDown, connection resets,
// timeouts), with exponential backoff and full jitter, bounded in total
// time, and stopping as soon as the caller's context is done.
//
// It owns: when to retry and how long to wait. It must not know any
// concrete store or client library: it asks transfer.Retryable, so errors
// matching ErrNotExist, ErrPrecondition or ErrPermanent (4xx, bad
// credentials, invalid keys) and cancellations are returned at once.
//
// What is retried, honestly:
//
//   - Put is retried only when the source can be rewound: if r is an
//     io.Seeker, each attempt seeks back to where the first one started.
//     A source that cannot seek is retried only if the failed attempt had
//     not read a single byte of it (for instance, connection refused);
//     otherwise the first error is returned. Give Put a *bytes.Reader,
//     *os.File or io.SectionReader to get full retries.
//   - Get retries opening the object, and a body that breaks while being
//     read resumes with a ranged Get from the first byte not yet
//     delivered. This assumes the object did not change meanwhile, which
//     holds for portvol's immutable objects; records that change are read
//     with Load, which is retried whole.
//   - List, after a failure, lists again and skips keys it already passed
//     to fn (keys come in lexical order), so fn sees each key once. An
//     error returned by fn is never retried.
//   - PutIfAbsent and PutIfMatch are retried like any write. If a response
//     was lost after the store applied the write, the retry fails with
//     ErrPrecondition although the write happened: callers (the lease)
//     re-read the record and compare it with what they wrote.
package retry
