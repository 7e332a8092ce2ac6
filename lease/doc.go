// Package lease is portvol's ownership protocol: which host may mount and
// publish a volume, enforced by conditional writes on one record per
// volume in the object store. portvol runs no consensus of its own; the
// store's compare-and-swap is the only arbiter.
//
// It owns: the head record format, every transition of it, expiry as seen
// by one host, and the recovery of writes whose response was lost. It must
// not know: snapshots' contents, Docker, local state (bbolt), or any
// concrete store; it imports the transfer root and the standard library.
//
// # Record
//
// volumes/<name>/head.json (HeadKey) holds, as JSON (see testdata/head-v1.json):
//
//	version          format version, 1. A reader refuses other versions
//	                 (ErrVersion: upgrade portvol) and anything malformed:
//	                 unknown, duplicate or differently cased keys, missing
//	                 required keys, trailing data, over 4 KiB (ErrCorrupt).
//	volume           the volume name; must match the key.
//	state            held | released | removed.
//	owner            host id of the holder (or last holder, or remover).
//	generation       the fencing token: +1 at every acquisition and takeover,
//	                 never decreases; 0 only before the first acquisition.
//	head             last published snapshot ID (optional).
//	head_generation  the generation that published head; manifests record
//	                 their generation too.
//	seq, nonce       +1 and 128 fresh random bits at every write: no two
//	                 writes have the same bytes, so no two have the same
//	                 ETag (stores such as S3 derive ETags from content).
//	ttl_ms           the writer's lease TTL. Observers wait for the longer of
//	                 it and their own, so a host configured with a shorter
//	                 --lease-ttl cannot take a live lease early.
//	renewed          the writer's wall clock; shown to people, never used.
//	takeover         {from, generation, forced, unchanged_ms}: set when this
//	                 generation was taken over from a holder (expired, or
//	                 forced), so every host's status can say what was lost;
//	                 cleared at the next acquisition.
//
// Options.Prefix gives the same protocol to other single-holder jobs: a
// Manager with Prefix "maintenance/" keeps maintenance/<name>/head.json
// (package prune's maintenance lease); the record format is the same.
//
// # Transitions
//
// Every write is PutIfAbsent (create) or PutIfMatch on the ETag last read,
// so two hosts racing from the same version cannot both win.
//
//	absent   → held, generation 1                  Acquire
//	released → held, generation+1, head kept       Acquire
//	held     → held, generation+1, takeover set    Takeover, WaitAcquire+AutoTakeover:
//	                                               only after this host saw the
//	                                               same ETag for a full TTL, or Force
//	held     → held, same generation (renewed)     Renew, KeepAlive (every TTL/3)
//	held     → held, head = snapshot               Publish (after its objects are durable)
//	held     → released                            Release (after the final Publish)
//	released or absent → removed                   Remove (held is refused)
//	removed  → released, no head                   Revive (volume created again)
//	removed or absent → released, given head       Undelete (volume back from the trash)
//
// Held by another host and not seen expired, Acquire fails with a
// *HeldError (ErrHeld) that names the holder, its generation, how long this
// host has seen it unchanged, and what to do; seen expired, the error also
// matches ErrExpired. WaitAcquire polls until a release, up to its Wait.
//
// A holder writes only on top of the version it wrote last. If that
// version is gone the holder is fenced (ErrFenced): it never writes again
// with that Lease, so it cannot publish. Resume continues a generation
// after this host restarts: allowed only while the record is still held by
// this host at that generation, and it renews at once.
//
// # Fencing argument
//
// Publishing is a CAS from the holder's last version. After a takeover the
// record is a version the old holder never wrote, so its publish fails and
// the snapshot it uploaded stays unreferenced. Because generations only
// grow and every acquisition writes generation+1 over the version it read,
// two hosts can never hold the same generation: the second writer's
// condition fails. A manifest carries its generation, so a snapshot can be
// traced to its holder.
//
// # Expiry
//
// Expiry is judged only by the observer's own monotonic clock (Clock),
// never by "renewed" or any other host's clock. A Manager remembers, per
// volume, the ETag it last read and the clock reading when a read first
// returned it; since that read came after the write, "unchanged for d"
// under-estimates the time since the holder's last renewal. A record seen
// unchanged for a full TTL is expired; the takeover is a CAS on that very
// ETag, so it fails if the holder renewed meanwhile. ETags never repeat
// (seq, nonce), so seeing the same ETag twice means nothing was written in
// between. A fresh process has seen nothing: it must watch a full TTL.
//
// A holder counts its TTL from when it sent its last successful write.
// Renewals every TTL/3 leave room for two failures; when the last success
// was sent TTL-10% ago (the margin absorbs clock rate differences) the
// lease has lapsed: other hosts may take it over. Lapsing is reported, not
// fatal: if nobody took over, the next renewal succeeds.
//
// # Lost responses and retries
//
// A conditional write that fails transiently, or with a precondition
// error, may still have been applied. The writer re-reads the record: if
// it holds the exact bytes written (unique by nonce) the write applied; if
// it still holds the old version, the same bytes are sent again, so a
// delayed first attempt and the retry apply at most once between them;
// anything else means another host won. If the outcome cannot be settled
// before ctx ends, the call fails and the bytes are remembered: a Lease
// settles them before its next write, and a later Acquire by the same
// Manager adopts a record that is its own unsettled acquisition.
//
// A holder whose call was cancelled acts on neither belief ("I hold", "I
// released") before Lease.Settle has found out: it renews on top of the
// last version it knows, which settles every earlier write for good (a
// late copy is conditional on a version that is then gone). A release of
// ours applied if the record holds its bytes, or went on from our
// generation through a released state: removed at our generation, or the
// next generation acquired without a takeover (and still held, or
// removed). Then the lease is released
// (ErrReleased), even though another host may hold the volume by now;
// anything else not ours is a *FencedError.
//
// # Crash recovery
//
// The driver persists the generation it holds. After a crash the record
// still says held by this host: Resume(volume, generation) continues it
// (finish the upload, publish, release). If the release had already
// applied, Resume returns ErrReleased (also when the record went on from
// it through a released state, as Settle judges); if another host took
// over meanwhile,
// a *FencedError: keep the local copy aside and report it. A record held
// by this host's id that the driver has no generation for (a crash between
// the write and persisting it) is a *HeldError with Self set while it is
// live. Once this host has seen it unchanged for a full TTL, every
// acquisition of this host (Acquire and WaitAcquire too, without
// AutoTakeover) takes it over: no process of this host renews it, else the
// record would have changed, and the takeover is a CAS on the ETag seen, so
// it fails if anybody renewed meanwhile. That is the argument for any
// expired lease; without it such a volume stays held until a takeover by
// hand, since no process will ever release that generation. (Recording the
// intended record before the write would let a restarted process resume
// sooner, but a write sent before the crash may still land after the
// restart, so it too would have to watch the record for a while; the TTL
// is what proves that no process, of this run or an earlier one, writes.)
package lease
