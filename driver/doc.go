// Package driver implements Docker's volume plugin protocol
// (docker.volumedriver/1.0) for portvol and the state machine that makes a
// volume follow its container between hosts: names and options, the per-ID
// mount counts, ownership (leases) and snapshots around Mount and Unmount,
// where a volume's data lives on this host and how it reaches the
// container, and the HTTP handler dockerd and the portvol command line
// talk to.
//
// # The store is the truth
//
// Scope is global. Whether a volume exists, its options and who owns it
// live in the shared store (catalog: volumes/<name>/volume.json; lease:
// volumes/<name>/head.json). Create writes the record; Get and List read
// the store through a 3 s cache with bounded reads, and when the store
// cannot be reached they answer from this host's bbolt records — a volume
// this host knows is never reported missing because of an outage (dockerd
// forgets volumes reported missing). A store that is missing, empty or
// another one answers as an outage too: cmd/portvol hands the driver a
// store guarded by its identity (transfer/guard), whose "does not exist"
// is checked against the store's config first. A bbolt record is created for every
// volume dockerd asks about, and carries the store record's incarnation
// (creation time and host), so a copy of a removed volume is never taken
// for a new volume of the same name.
//
// # Local state machine (metadata.Volume.Local, persisted)
//
//	absent     no local copy (made elsewhere, or moved aside)
//	restoring  a restore into data/ runs (Mount's, or portvol pull's);
//	           data/ still holds LocalSnapshot until the atomic swap
//	ready      data/ holds LocalSnapshot (+ unpublished changes if Dirty)
//	mounted    bind-mounted for containers; Dirty
//	releasing  unmounted, final snapshot and release pending; lease held
//	diverged   this host lost the lease (fenced): data/ was moved to
//	           fenced-<gen>-<time> (kept, listed in Aside); the next Mount
//	           restores the store's head
//	missing    data/ vanished; the next Mount restores the head
//
// Beside the phase: LocalSnapshot (the published snapshot data/ was made
// equal to), Dirty (changes no published snapshot has), Generation (the
// lease generation held, written right after acquiring, so a restart can
// resume it), Aside (copies kept), LastError, TakenOver.
//
// Transitions:
//
//	Mount 0→1 (firstMount, under the volume lock):
//	  cancel this host's running release (a remount right after an
//	  unmount loses nothing and, unless the release had landed, takes no
//	  new generation);
//	  ensureLease: keep the held lease once a renewal (a conditional
//	  write on the version this host knows) proves it still this host's,
//	  which also settles its writes of unknown outcome (a release that
//	  landed is recorded as one, and the Mount acquires again, behind any
//	  host that took the volume meanwhile; a takeover found so fences the
//	  copy and refuses the Mount, naming the taker), or Resume the
//	  recorded generation, or
//	  WaitAcquire up to --mount-wait (taking an expired lease over with
//	  -o takeover=auto, and always one of this host's id that no process
//	  here knows: a run killed before recording the generation); a holder elsewhere fails the Mount with the
//	  lease's message (holder, how long unchanged, portvol takeover); a
//	  lease acquired after the volume was removed and created again is
//	  given back and the Mount starts over with the new volume;
//	  ensureData on a new acquisition: data/ at the head → as is; data/
//	  with changes the head lacks → moved aside (diverged-<time>); else
//	  restore the head as a job (fetching only chunks the old copy lacks),
//	  awaited until 1 s before the call's 25 s deadline — then Mount fails
//	  with "restoring V: 45% (2.9 GiB of 6.5 GiB), try again shortly", keeping the
//	  lease and the restore running (released after 5 min without a Mount);
//	  bind, Local=mounted, Dirty, start the periodic snapshots.
//	Unmount 1→0 (lastUnmount): unbind and return; the release job (settle)
//	  stops the periodic snapshots, takes the final (quiescent) snapshot
//	  with Parent=head, publishes it (a CAS on the head record), records
//	  LocalSnapshot, releases the lease, Local=ready, Generation=0.
//	  Store failures are retried with backoff; until the release the lease
//	  stays held (renewed), so a crash in between is finished at start.
//	Periodic (while mounted): every snapshot_interval, Create + Publish;
//	  taken while containers write, so only crash-consistent.
//	Fenced (a renew, publish or resume finds the record changed by
//	  another host): stop publishing, stop the jobs, move data/ aside (a
//	  container still running keeps writing into it), Local=diverged,
//	  LastError says where the copy is; the unmount publishes nothing.
//	Start (Reconcile, local only): fix phases a stop left half-done, put
//	  back bind mounts of mounted volumes. Then Connect (background, once
//	  the store answers): resume every recorded generation — mounted:
//	  keep renewing; restoring: restart the restore; otherwise settle —,
//	  fence the copies whose lease was taken meanwhile, register volumes of
//	  a single-host portvol in the store, give back (acquire and release)
//	  a lease of this host's id that no generation is recorded for, once
//	  seen unchanged for a TTL (recover.go: giveBackOrphan), purge the
//	  store's trash hourly.
//	Remove: refused while mounted here or held elsewhere (the message
//	  names the holder); waits for this host's final snapshot; tombstone
//	  (lease.Remove), then the record, snapshots and indexes move to
//	  trash/<name>/<removal time>/ (any host or retry finishes the move);
//	  unpublished or aside copies go to <state-dir>/kept, the rest is
//	  deleted. Undelete brings the newest trash entry back.
//
// # Where the data lives
//
// A volume's local copy is kept through localcopy.Copies (copies.go):
// new copies in Config.Copies (btrfs subvolumes, or directories), copies
// made as directories before in a localcopy.Dir; the record says which
// (metadata.Volume.Filesystem). The state machine does not care which:
// it creates, freezes, restores into, moves aside and removes copies
// through the interface. A snapshot reads a frozen instant (btrfs: a
// read-only snapshot of the whole volume, then kept as the base of the
// next one and recorded with the snapshot it belongs to, see Base;
// directories: the live tree, read with snapshot.CreateOptions.Live so
// that churn cannot fail it). A restore writes into a restore target
// and swaps it in; a directory copy restored on a btrfs host becomes a
// subvolume (or with Convert). The size option is a quota group limit.
//
// # On-disk layout under the state directory
//
//	<state-dir>/volumes/<name>/data         the volume's data when it is a
//	                                        directory (a btrfs copy is at
//	                                        <pool>/volumes/<name>/data, see
//	                                        localcopy/btrfs; never inside
//	                                        the propagated mount, which
//	                                        dockerd deletes on plugin rm)
//	<state-dir>/volumes/<name>/statcache    the snapshot engine's stat cache
//	<state-dir>/volumes/<name>/fenced-*     copies moved aside (also
//	                        diverged-*, orphan-*); never deleted
//	<state-dir>/kept/<name>.*               copies kept when a volume was
//	                                        removed or replaced
//	<state-dir>/trash/<name>.<nanos>        removed data, deleted in the
//	                                        background
//	<mount-root>/<name>                     the Mountpoint: a bind mount of
//	                                        data while mounted here
//
// # Concurrency
//
// Each volume has its own lock, taken by Create, Remove, Mount, Unmount,
// the command line's calls, fencing and recovery; there is no lock across
// volumes. Jobs (restore, release) and the periodic snapshots run without
// it, because lock holders wait for them; they only touch the bbolt fields
// nobody else changes while they run. Get, List, Path and Capabilities take
// no volume lock (they read bbolt and the cache), so they never wait
// behind a slow Mount.
//
// # The command line's calls
//
// POST /Portvol.Status, /Portvol.Takeover, /Portvol.Pull and
// /Portvol.Undelete on the plugin's socket (see AdminStatus): the plugin
// holds the store credentials, the host id, the lease observations and the
// local copies, so portvol status, takeover, pull and undelete go through
// it and obey the same ownership rules as a Mount.
//
// The package knows nothing of flags, the environment or concrete stores;
// cmd/portvol wires it (Config.Connect). It must not import Docker's own
// packages.
package driver
