// Package meter is a transfer.ObjectStore decorator that reports what
// crosses it: the bytes sent to and received from the store, and whether
// the store answered each request. cmd/portvol composes it under the
// retry decorator (so every attempt is seen) and turns the reports into
// metrics.
//
// It owns: what counts as a moved byte and as an answer. Uploads count the
// bytes of every Put, PutIfAbsent and PutIfMatch the store accepted (a Put
// that fails midway counts nothing: the store kept nothing of it); downloads
// count the bytes read from Get bodies as they are read, and the bytes of
// every Load. A request "answered" when it returned nil, ErrNotExist,
// ErrPrecondition or ErrTooLarge: the store is there and says something
// portvol can use.
// Any other error — a dial or TLS failure, a timeout, a 5xx, refused
// credentials (ErrPermanent) — is reported as unanswered, except a
// cancellation by the caller, which says nothing about the store.
//
// It must not know: any concrete store, client or metrics library; the
// reports are plain functions. It imports the transfer root package only.
package meter
