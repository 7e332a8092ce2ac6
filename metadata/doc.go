// Package metadata is this host's own bookkeeping, kept in one bbolt file in
// the state directory: the volumes this host knows (options, creation time,
// state of the local copy — which snapshot it holds, whether it has
// unpublished changes, the lease generation held, copies moved aside —,
// measured size), the mount IDs dockerd holds on each volume with a count
// per ID, the host id, and the identity of the store this host joined. The
// store, not this file, says which volumes exist; these records are this
// host's cache of them and its own state.
//
// Layout (schema 1):
//
//	meta/    "schema" → "1", "host_id" → the host id,
//	         "store_id" → the store joined (its config's store_id),
//	         "store_may_create" → "1" from a first start until a store is joined
//	volumes/ <name>   → JSON Volume record
//	mounts/  <name>/  → nested bucket: <mount ID> → count (decimal text)
//
// Every write is one bbolt transaction committed with fsync, so a kill -9
// loses nothing that a call returned success for.
//
// The package owns the file format and nothing else: it does not know what a
// valid volume name or option is (the driver checks that before writing),
// never touches volume data, and knows nothing of Docker or object stores.
package metadata
