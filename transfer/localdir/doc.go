// Package localdir is a transfer.ObjectStore in a local directory, the
// embedded default store (file:///var/lib/portvol/store). One host uses it
// out of the box; several hosts share it over NFS.
//
// It owns: the mapping of keys to files, atomic publication, ETags, and
// conditional writes that stay atomic between processes. It must not know
// the snapshot format, leases or any other store.
//
// # Creating and opening
//
// New makes a store (the directory and ROOT/.portvol); Open uses one that
// exists and creates nothing. A directory that is missing or has no
// ROOT/.portvol — a typo, or the mount point of a file system that is not
// mounted — is not a store: Open fails with transfer.ErrStoreMissing. If
// the directory vanishes under an open Store, writes fail the same way
// (they need ROOT/.portvol/tmp and locks/) and never recreate it; reads
// answer ErrNotExist, which the guard decorator (transfer/guard) checks
// against the store's identity. Load reads an object whole only if its
// size (from the inode, before any read) is within the caller's bound.
//
// # Layout
//
// The object "a/b/c" is the file ROOT/a/b/c. The directory ROOT/.portvol
// holds the store's own files and is never listed: tmp/ for objects being
// written, locks/ for conditional-write lock files. Keys whose first segment
// is ".portvol" are rejected. A key cannot be both an object and the
// prefix of another ("a" and "a/b"), since a path cannot be both a file
// and a directory; portvol's layout never needs that.
//
// # Durability and atomicity
//
// Put writes a temp file in ROOT/.portvol/tmp, fsyncs it, renames it into
// place and fsyncs the directory (and any directory it had to create).
// Readers therefore see the old object or the new one, never a part. A
// crashed writer leaves a temp file that is never listed; New removes temp
// files older than an hour. ROOT/.portvol and the objects must be on one
// file system (do not mount anything below ROOT).
//
// PutIfAbsent, PutIfMatch and Delete of one key are serialised by an
// exclusive flock(2) on ROOT/.portvol/locks/<hash of key>.lock, taken
// after an in-process lock on the same key. On Linux, flock over NFS is
// mapped to POSIX byte-range locks, which the NFS server arbitrates
// between hosts; locks die with their process (over NFSv4, when the dead
// client's lease expires). Because NFS POSIX locks belong to a process,
// not a file descriptor, one process should open a given directory with
// one Store. Delete removes the key's lock file while holding it; every
// locker checks after locking that the path still names the file it
// locked, and otherwise locks again.
//
// # ETags
//
// ETags change whenever content changes and are identical in Stat, List,
// Load and the result of a conditional write for the same bytes:
//
//   - objects of at most 1 MiB (records such as head.json, manifests):
//     the first 128 bits of the SHA-256 of the content, in hex. This stays
//     correct when two writes keep the size and fall into one timestamp
//     tick, as on NFS with coarse timestamps.
//   - larger objects (packs): "s<size>-m<mtime in ns>-i<inode>", in hex.
//     Every Put creates a new file, so the inode and mtime change; these
//     objects are immutable by convention and never conditionally written.
package localdir
