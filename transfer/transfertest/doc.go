// Package transfertest is the conformance suite every transfer.ObjectStore
// runs. A store opts in with a few lines in its own tests:
//
//	func TestConformance(t *testing.T) {
//		transfertest.Run(t, func(t *testing.T) transfer.ObjectStore {
//			return localdir.New(t.TempDir()) // a fresh, empty store
//		})
//	}
//
// It owns: the behaviour a store must show to the layers above it (round
// trips, ranged reads, ordered paginated listing, delete semantics,
// cancellation, atomic conditional writes under concurrency, key
// validation). It must not know any concrete store.
package transfertest
