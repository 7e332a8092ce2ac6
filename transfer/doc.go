// Package transfer defines ObjectStore, the one interface through which
// portvol moves bytes to and from object storage, and the sentinel errors
// every store reports.
//
// It owns: the interface, the error vocabulary (ErrNotExist,
// ErrPrecondition, ErrPermanent, ErrTooLarge, ErrStoreMissing,
// ErrWrongStore, Retryable), the key rules (CheckKey, CheckPrefix), the
// redacting Secret type, and helpers that work over any store:
// ContextReader makes a local body honour cancellation; ReadAll reads a
// whole object within a bound; ProbeConditional proves a store honours
// conditional writes. Callers that move many objects at once bound their
// concurrency themselves (snapshot uses errgroup with a limit).
//
// Every read of a whole object names its bound (Load's limit, ReadAll's):
// objects come from a shared store that anyone with access can fill, and a
// 4 GiB head.json must cost an error naming the key and the bound, never
// 4 GiB of memory.
//
// It must not know: any concrete store, any client library, the snapshot
// format or Docker. It imports the standard library only. Concrete stores
// live in subpackages (transfer/s3, transfer/localdir) and decorators such as
// transfer/retry wrap an ObjectStore; cmd/portvol composes them.
package transfer
