// Package writer is the one orchestration every writer of a volume runs,
// so that a fix to it lands once: the plugin (driver) and portvol import
// take the lease, snapshot, publish and release through it.
//
// The sequence is: acquire the lease (or continue one a dead earlier run
// on this host left held, proven by a local Claim) → keep it alive →
// snapshot the directory with the store's guard (no pack a prune is
// collecting) recording the lease's generation → publish the snapshot as
// the head with a conditional write that applies only while the lease is
// still ours → release. Snapshot is the create-and-publish step (the
// driver's periodic and final snapshots use it); Run is the whole
// sequence for a one-shot job.
//
// A store write whose answer is lost has an unknown outcome; it is settled
// (read back and compared, through the lease, which recognises its own
// writes) before anything acts on either belief.
//
// It owns: that sequence and the local claim file. It must not know
// Docker, bbolt or concrete stores; it imports lease, snapshot, the
// transfer root and internal helpers.
package writer
