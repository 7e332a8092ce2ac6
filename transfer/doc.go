// Package transfer defines ObjectStore, the one interface through which
// portvol moves bytes to and from object storage, and the sentinel errors
// every store reports.
//
// It owns: the interface, the error vocabulary (ErrNotExist,
// ErrPrecondition, ErrPermanent, Retryable), the key rules (CheckKey,
// CheckPrefix), the redacting Secret type, and ContextReader, which makes
// a local body honour cancellation. Callers that move many objects at once
// bound their concurrency themselves (snapshot uses errgroup with a limit).
//
// It must not know: any concrete store, any client library, the snapshot
// format or Docker. It imports the standard library only. Concrete stores
// live in subpackages (transfer/s3, transfer/localdir) and decorators such as
// transfer/retry wrap an ObjectStore; cmd/portvol composes them.
package transfer
