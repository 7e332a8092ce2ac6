// Package transfer defines ObjectStore, the one interface through which
// portvol moves bytes to and from object storage, and the sentinel errors
// every store reports.
//
// It owns: the interface, the error vocabulary (ErrNotExist,
// ErrPrecondition, ErrPermanent, ErrTooLarge, ErrStoreMissing,
// ErrWrongStore, Retryable), the key rules (CheckKey, CheckPrefix), the
// redacting Secret type, and helpers that work over any store: Group runs
// many Puts and Gets with a concurrency limit, progress reporting and an
// optional bandwidth cap (Limiter); ContextReader makes a local body
// honour cancellation; ReadAll reads a whole object within a bound;
// ProbeConditional proves a store honours conditional writes.
//
// Every read of a whole object names its bound (Load's limit, ReadAll's):
// objects come from a shared store that anyone with access can fill, and a
// 4 GiB head.json must cost an error naming the key and the bound, never
// 4 GiB of memory.
//
//	g := transfer.NewGroup(ctx, store, transfer.GroupOptions{
//		Concurrency: 4,
//		Limiter:     transfer.NewLimiter(100 << 20), // 100 MiB/s, shareable
//		Progress:    func(p transfer.Progress) { log(p.Done, p.Total) },
//	})
//	for _, pack := range packs {
//		if err := g.PutBytes(pack.Key, pack.Data); err != nil {
//			break // the group failed; Wait returns why
//		}
//	}
//	err := g.Wait()
//
// It must not know: any concrete store, any client library, the snapshot
// format or Docker. It imports the standard library only. Concrete stores
// live in subpackages (transfer/s3, transfer/localdir) and decorators such as
// transfer/retry wrap an ObjectStore; cmd/portvol composes them.
package transfer
