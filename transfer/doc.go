// Package transfer defines ObjectStore, the one interface through which
// portvol moves bytes to and from object storage, and the sentinel errors
// every store reports.
//
// It owns: the interface, the error vocabulary (ErrNotExist,
// ErrPrecondition, ErrPermanent), the redacting Secret type, and helpers
// that work over any store (bounded parallel transfers with progress).
//
// It must not know: any concrete store, any client library, the snapshot
// format or Docker. It imports the standard library only. Concrete stores
// live in subpackages (transfer/s3, transfer/localdir) and decorators such as
// transfer/retry wrap an ObjectStore; cmd/portvol composes them.
package transfer
