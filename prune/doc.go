// Package prune keeps a portvol store bounded: retention per volume
// (forget) and lock-free garbage collection of the objects no snapshot
// needs any more (prune), safe while any number of hosts publish
// snapshots, import, forget and prune at the same time.
//
// It owns: the retention policy and its meaning, the collection records
// and the store-time probes under prune/, the maintenance lease's name,
// and the argument below. It must not know: the snapshot format (it
// lists objects and asks snapshot.Objects and Repo.References what each
// snapshot keeps alive, and never decodes a manifest or a pack key
// itself), Docker, flags or local state. It imports snapshot, lease,
// catalog and the transfer root.
//
// # Store layout
//
//	prune/collections/<id>        collection records (JSON, created with PutIfAbsent,
//	                              deleted when their step two is done)
//	prune/clock/<random>          store-time probes, deleted at once
//	maintenance/prune/head.json   the maintenance lease (package lease's record)
//
// <id> is the pruner's UTC time and 64 random bits, like a snapshot ID; it
// orders nothing that safety depends on.
//
// # Retention (Forget)
//
// A Policy keeps, like restic's forget: the Last n snapshots; for Hourly,
// Daily, Weekly and Monthly n, the newest snapshot of each of the n most
// recent hours (days, ISO weeks, months) that have one, in UTC. A snapshot
// is kept if any rule keeps it. Beyond the policy, Forget never forgets:
//
//   - the head (read from the head record after listing the snapshots, so
//     a snapshot published meanwhile is not in the list and the head read
//     is at least as new as every snapshot listed);
//   - the newest snapshot of each of the last BaseGenerations (4)
//     generations before the current one. A host's local copy is the
//     snapshot it last published or restored, which is the newest of the
//     generation it held, so hosts that held the volume recently keep a
//     base to restore incrementally from. Older bases may be forgotten:
//     that host then restores in full, which costs time, never data.
//     (Per-host "based on" records were the alternative; they need every
//     host to write to the store when its copy changes, and a dead host's
//     record would pin snapshots forever.)
//
// A restore running while its snapshot is forgotten still finishes: the
// packs go only when a collection made after the forget has waited its
// margin (below). The driver applies the volume's policy after each
// publish, as the lease holder; `portvol forget` applies any policy from
// anywhere. Two forgets at once only delete the same manifests twice.
//
// # Garbage collection: two steps, no lock
//
// The store has no rename, so a "fossil" is not a renamed pack but an
// entry in a collection record. Objects: manifests (snapshots/…, and
// manifests of removed volumes in trash/… until the trash is purged),
// packs, pack indexes.
//
// Step one (mark), from any host, at store time T1:
//
//  1. Learn the store's time: write a probe object and read its ModTime.
//  2. List every manifest, live and in the trash, and stream each through
//     Repo.References (one at a time, a few in flight) into the set of
//     referenced packs and index prefixes. A manifest that cannot be read
//     (damaged, or a newer format) stops the prune: its references are
//     unknown, so nothing may be deleted.
//  3. List packs: a pack no manifest references whose ModTime is older
//     than T1 − margin is a candidate. Younger ones may belong to a Create
//     still uploading, or to an interrupted one that will be resumed.
//  4. Write a collection record with PutIfAbsent listing the candidates
//     and their pack indexes. Index objects that protect nothing (their
//     pack is gone, or their parent snapshot is gone and they are older
//     than the margin) are deleted at once: an index is only a hint for
//     deduplication; a writer checks that a pack exists before it reuses it.
//
// Step two (sweep) of a record, from any host, once the store's clock
// says the record is at least margin old (its ModTime against a fresh
// probe's, both stamped by the store):
//
//  1. List every manifest again. A candidate that any manifest references
//     now is revived: it is simply not deleted.
//  2. Delete the remaining candidates' indexes, then the candidates.
//  3. Delete the record.
//
// A run of either step can be killed at any point and repeated by anyone:
// every deletion is idempotent, the record goes last, and step two re-lists
// every time it runs. Two prunes at once do the same work twice.
//
// # The writer's half (snapshot/guard.go)
//
// snapshot.Options.Fossils is given Fossils(store): the packs listed in
// pending records. A Create (1) reuses no pack that is listed or missing
// (leftover indexes are checked with Stat; a parent whose packs are listed
// is not used, everything is read again), and (2) right before it writes
// its manifest looks again: the parent manifest exists, every other pack
// the manifest names exists, none is listed; otherwise it publishes
// nothing and fails with snapshot.ErrCollected (the next attempt uploads
// those chunks). If the window from that look to the manifest write
// exceeded a minute (a stalled process), it looks once more after writing
// and withdraws the manifest if anything changed. A manifest write whose
// outcome it does not know (an error, which may come after the store
// applied it) is withdrawn too, since the Create reports failure and would
// take no second look: otherwise a stalled writer that lost that answer
// left a listed snapshot whose packs a sweep had deleted (found by the
// randomized test under load). A writer killed right after such a write
// leaves its manifest; only a stall longer than the margin between its
// last look and that write can make it name a deleted pack, which is what
// the margin (an hour by default, against a one-minute window) rules out.
//
// Why no published or in-progress snapshot loses a pack. Let a
// collection C list pack F and delete it in step two at time D after
// listing manifests at L2 < D. Take any manifest M naming F, written at
// time W after its writer's last look at time A (W − A ≤ w, a minute).
//
//   - If C's record was durable before A, the look saw F listed, and M
//     was never written.
//   - Otherwise the record became durable after A, and L2 is at least a
//     margin later by the store's clock: L2 > A + margin > A + w ≥ W. So
//     M existed at L2, F was revived, and D never deleted it.
//
// The parent's packs are not checked one by one: a pack is deleted only if
// no manifest named it at L2, and the parent manifest existed at the look,
// so by the same argument applied to the parent's own writer its packs
// exist. A writer fenced by a takeover (a zombie) follows the same rules:
// if its parent was forgotten meanwhile, the look finds the manifest gone.
//
// Where clocks are used, and why skew cannot delete live data:
//
//   - Pack candidacy and ripeness compare two timestamps written by the
//     store itself (a pack's or record's ModTime against a probe's), never
//     a host's clock against the store's, so hosts with skewed clocks
//     agree. A store whose clock jumps forward by more than the margin
//     could ripen a record early; the margin (default 1 h, at least ten
//     times w) is chosen so that only a jump of that size, landing inside
//     one writer's one-minute window, could matter.
//   - The writer's window w is measured on its own monotonic clock.
//   - Retention buckets use the snapshot IDs' times (the writers' wall
//     clocks): skew there changes which snapshot a bucket keeps, never
//     whether a listed snapshot's packs exist.
//   - The maintenance lease's expiry is judged, as for volumes, on the
//     observer's monotonic clock.
//
// --margin 0 makes every unreferenced pack a candidate and every record
// ripe at once: correct only while no writer is active. Two runs in a row
// then reclaim everything unreferenced (the first marks, the second
// sweeps). The margin must exceed the slowest snapshot upload for a
// different reason than safety: a Create running longer than two margins
// sees its own early packs collected and fails with ErrCollected (its
// retry re-uploads them), so a too-short margin costs work, not data.
//
// Why not Duplicacy's rule that every writer must have completed a new
// snapshot since step one: a volume whose holder is idle or dead would
// block every collection, and a fenced writer still uploading is not
// covered by it. The writer's last look covers both.
//
// # Repacking: not done, on purpose
//
// Manifests are immutable and name packs (the pack table of format
// versions 1 and 2), so moving a live chunk to a new pack would mean
// rewriting every manifest that uses it. A pack is freed when all its
// chunks are dead. A pack holds only chunks written by one Create (in
// format 2, 16 KiB chunks in packs of about 16 MiB; a small change writes
// one small pack), so packs die together with the snapshots that wrote
// them, except that one live chunk keeps its whole pack. The soak test
// (soak_test.go: 100 blocks, 1 % changing per hour, 30 days, default
// policy, format 2) ends at 1.42× of what the kept snapshots need: 20.5
// MiB stored against 14.5 MiB of kept chunks and manifests (the policy's
// analytic bound for that change rate is 18.2 MiB); the difference is dead
// chunks in packs that a few live ones keep. Repacking could save at most that 0.42×,
// by rewriting live data and every manifest naming it. The worst case is
// a pack per live chunk; data that never changes is live anyway, so in
// practice the waste is the dead part of packs mixing hot and cold
// blocks, which only repacking would reclaim. A later format that locates
// chunks through an index instead of a pack table could repack; prune
// would then list the index as a reference.
//
// # Memory and time
//
// Prune holds the set of referenced packs (40 bytes each plus map
// overhead) and one manifest per transfer in flight, never all manifests:
// 100 volumes × 1,000 snapshots stream through. Its time is one listing of
// manifests, packs and indexes plus one GET per manifest (`make bench-prune`).
//
// # Maintenance in the plugin
//
// Maintainer runs prune in the background on one host at a time: it takes
// the lease "prune" under maintenance/ with package lease (the same record,
// CAS, expiry and takeover as a volume's lease), keeps it alive while it
// runs, and releases it. Safety does not rest on it (two prunes are safe);
// it only avoids doing the same work on every host.
package prune
