// Package driver implements Docker's volume plugin protocol
// (docker.volumedriver/1.0) for portvol: names and options, the per-ID mount
// counts, where a volume's data lives on this host and how it reaches the
// container, and the HTTP handler dockerd talks to.
//
// On-disk layout under the state directory:
//
//	<state-dir>/volumes/<name>/data   the volume's data (never inside the
//	                                  propagated mount, which dockerd deletes
//	                                  on `docker plugin rm`)
//	<state-dir>/volumes/<name>/…      room for sidecar files (snapshot stat
//	                                  cache, restore staging directories)
//	<state-dir>/trash/<name>.<nanos>  removed volumes, deleted in the background
//	<mount-root>/<name>               the Mountpoint: a bind mount of data,
//	                                  present while any mount count is above 0
//
// Concurrency: each volume has its own lock, taken by Create, Remove, Mount
// and Unmount and released on return; there is no lock across volumes. Get,
// List, Path and Capabilities take no volume lock (they read bbolt, which
// serves readers beside a writer), so they never wait behind a slow Mount.
//
// Hook points for the ownership work: firstMount (mount count 0→1) and
// lastUnmount (1→0) in lifecycle.go are the only places that prepare or
// release a volume's data; acquiring the lease and restoring the latest
// snapshot belong in the first, the final snapshot and the lease release in
// the second.
//
// The package knows nothing of flags, the environment or concrete stores;
// cmd/portvol wires it. It must not import Docker's own packages.
package driver
