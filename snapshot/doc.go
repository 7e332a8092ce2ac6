// Package snapshot is portvol's snapshot engine and the specification of
// its on-store format (this file). It turns a volume's directory tree into
// an immutable snapshot in an object store and back.
//
// It owns: the store keys listed below (volumes/<name>/volume.json and
// head.json belong to the catalog and lease packages; keeping snapshots out
// of volumes/ lets a volume listing read two keys per volume); the local
// stat cache file it is given. It must not know: which store it talks to
// (it sees transfer.ObjectStore only), leases and the head record (the
// caller publishes a snapshot by pointing head.json at it), Docker, flags
// or the environment. It imports the transfer root package, zstd, BLAKE3
// and x/sys only. It runs on Linux only (openat2, renameat2, syncfs).
//
// # Store layout
//
//	config                                   store configuration (JSON, plaintext)
//	packs/<xx>/<pack-id>                     packed chunks (immutable)
//	snapshots/<name>/<snapshot-id>           manifests (immutable, created with PutIfAbsent)
//	index/<name>/<parent>/<pack-id>          pack indexes (immutable)
//
// <pack-id> is the lower-case hex BLAKE3-256 of the pack object's bytes and
// <xx> its first two digits. <snapshot-id> is the UTC start time and 64
// random bits, 20060102T150405Z-0123456789abcdef, so names sort by time.
// <parent> is the snapshot ID a Create run started from, or "initial".
// <name> matches ^[A-Za-z0-9][A-Za-z0-9_.-]*$ (at most 128 characters).
//
// Nothing is ever overwritten. A snapshot is visible exactly when its
// manifest exists, and the manifest is written last, after every pack it
// refers to has been stored (Put returned), so a reader never sees a
// snapshot whose objects are not durable. An interrupted Create leaves
// packs and pack indexes but no manifest.
//
// # Configuration object
//
// "config" is a JSON object, written once by Init with PutIfAbsent:
//
//	{"format": "portvol-snapshot-store", "version": 1,
//	 "store_id": 32 hex digits (16 random bytes),
//	 "chunking": "fixed", "block_size": 1048576,
//	 "compression": "zstd",
//	 "encryption": "none" | "aes-256-gcm",
//	 "key_check": 64 hex digits (encrypted stores only)}
//
// Unknown fields are rejected; a version above FormatVersion is reported as
// ErrUnsupportedVersion. block_size is a power of two from 64 KiB to 8 MiB.
//
// # Keys and encryption
//
// The master key is 32 bytes, given by the caller (ParseKey reads a key
// file: 32 raw bytes, 64 hex digits or base64). Three keys are derived with
// BLAKE3 derive-key from the material master ‖ store_id, so one master
// key gives unrelated keys in two stores:
//
//	"portvol 2026-08 snapshot chunk id"        keyed-BLAKE3 key for chunk IDs
//	"portvol 2026-08 snapshot data encryption" AES-256-GCM key
//	"portvol 2026-08 snapshot key check"       stored as key_check
//
// Open compares key_check in constant time: no key for an encrypted store
// is ErrKeyRequired, another key ErrWrongKey, a key for a plain store
// ErrNotEncrypted. A wrong key can therefore never produce garbage.
//
// Sealing (manifest parts, pack indexes) with associated data ad:
// encrypted, nonce(12 random bytes) ‖ AES-256-GCM(plaintext, ad) ‖ tag(16);
// plain, plaintext ‖ BLAKE3-256(le64(len(ad)) ‖ ad ‖ plaintext). The ad
// always contains the object key, so an object copied to another name does
// not open. Plain stores detect damage, encrypted stores also forgery.
//
// # Chunking: fixed, aligned blocks
//
// Each regular file is cut into aligned blocks of block_size (1 MiB by
// default); the last block is shorter. A block that is all zero is a hole:
// nothing is stored and the manifest omits it. Blocks inside holes of a
// sparse file (SEEK_DATA/SEEK_HOLE) are not even read.
//
// Why fixed blocks and not content-defined chunking: databases update 8 KiB
// pages in place, so block boundaries never shift; fixed blocks cost
// nothing to find, split one large file across all cores, and map to
// ranged reads on restore. Measured on a PostgreSQL 15 data directory
// (pgbench -i -s 20, 577 MiB) before and after 15 s of pgbench (2 clients,
// 790 tps), counting bytes in chunks not present before:
//
//	fixed 64 KiB   403.8 MiB new (69.7 %)    9867 chunks
//	fixed 256 KiB  419.5 MiB new (72.4 %)    3055 chunks
//	fixed 1 MiB    420.2 MiB new (72.5 %)    1369 chunks
//	fixed 4 MiB    422.2 MiB new (72.9 %)     952 chunks
//	CDC 512K/1M/8M 419.6 MiB new (72.4 %)    1137 chunks  (gear hash, restic's sizes)
//	CDC 128K/256K/1M 419.5 MiB new (72.4 %)  2123 chunks
//
// and at pgbench -s 50 (1394 MiB) before and after 15 s of pgbench
// (434 tps): fixed 64 KiB 407 MiB new, 256 KiB 699 MiB, 1 MiB 754 MiB,
// 4 MiB 754 MiB; CDC 512K/1M/8M 755 MiB, CDC 128K/256K/1M 743 MiB.
//
// Content-defined chunking saves nothing on database files (random page
// updates touch nearly every chunk of either kind; recycled WAL segments
// are rewritten whole) and costs a pass at ~1.5 GB/s per core. Smaller
// blocks help only below 256 KiB, at 16× the chunk count. 1 MiB keeps the
// chunk table small (10 000 entries for 10 GB) while a 1 MiB change costs
// at most 2 MiB of upload; Init takes another block size per store.
//
// # Chunk IDs, records and packs
//
// A chunk's ID is BLAKE3-256 of its plaintext, keyed with the chunk-ID key
// when the store is encrypted, so IDs reveal nothing about the data. A
// chunk is stored zstd-compressed (SpeedFastest) unless that saves less
// than 1/32 of its size, in which case it is stored raw. Its record in a
// pack is the stored bytes themselves in a plain store (the ID already
// verifies them), or seal(stored, ad = chunk ID) in an encrypted one.
//
// A pack is the concatenation of records, nothing else; packs are filled
// to at least 16 MiB (the last pack of a run may be smaller) and never
// exceed 1 GiB. The manifest gives each chunk's pack, offset, record
// length, plaintext length and whether it is compressed. Every chunk is
// verified before use: in an encrypted store the record is authenticated
// (its associated data is the chunk ID, so only a key holder could have
// sealed it under that ID), in a plain one the ID of the plaintext is
// recomputed; either way it is decompressed into at most its plaintext
// length and the length checked. Verify recomputes every ID in both.
//
// # Pack indexes
//
// After each pack, Create stores its index under
// index/<name>/<parent>/<pack-id>: "PVSI" ‖ version(1) ‖
// seal(payload, ad = "PVSI" ‖ version ‖ key), payload = pack ID(32) ‖
// uvarint pack size ‖ uvarint count ‖ count × (chunk ID(32) ‖ uvarint
// offset ‖ uvarint length ‖ uvarint raw length ‖ flags byte, 1 =
// compressed). A Create knows which chunks the store has from the parent
// manifest's chunk table plus the indexes under its own <parent> prefix,
// which are exactly the packs of earlier attempts from the same parent —
// so a re-run after an interruption uploads only what is missing, and a
// host without any local cache still deduplicates against the parent.
// A leftover index is used only if its pack exists with the size the
// index records (one Stat per pack): an interrupted run's packs may have
// been cleaned up by hand, and a snapshot must never refer to a pack that
// is not there. The parent's packs are trusted: they belong to a published
// snapshot, which nothing in portvol deletes (portvol verify checks them).
// Chunks held only by other volumes or older snapshots are uploaded again
// (harmless duplicates, reclaimable by a future prune).
//
// # Manifests
//
// snapshots/<name>/<id> is
//
//	"PVSM" ‖ version(1) ‖ le32 n ‖ seal(header, ad_h) [n bytes] ‖ seal(zstd(body), ad_b)
//	ad_h = "PVSM" ‖ version ‖ "h" ‖ key
//	ad_b = "PVSM" ‖ version ‖ "b" ‖ key ‖ BLAKE3-256(header)
//
// so List reads the header with one short ranged GET, and a body cannot be
// paired with another header. Encoding primitives: uvarint and varint
// (zig-zag) as in encoding/binary; str = uvarint length ‖ bytes.
//
// header: uvarint version(1), str id, str volume, str parent ("" for
// none), str host, uvarint generation, varint started and finished (Unix
// ns), uvarint block size, 13 × uvarint statistics (files, dirs, symlinks,
// hardlinks, others, skipped, bytes, data bytes, files read, bytes read,
// new chunks, new bytes, uploaded bytes), uvarint body length.
//
// body:
//
//	uvarint P, P × pack ID(32)
//	uvarint C, C × (chunk ID(32) ‖ uvarint pack ‖ uvarint offset ‖ uvarint length ‖ uvarint raw length ‖ flags)
//	uvarint N, N × node
//	node = [uvarint parent ‖ str name, except node 0] ‖ type byte ‖
//	       (hardlink: uvarint target node) |
//	       (uvarint mode ‖ uvarint uid ‖ uvarint gid ‖ varint mtime ‖ varint ctime ‖
//	        uvarint inode ‖ per type ‖ uvarint X ‖ X × (str name ‖ str value))
//	file: uvarint size ‖ uvarint B ‖ B × (uvarint block gap ‖ varint chunk delta)
//	symlink: str target; char/block device: uvarint rdev; dir, fifo: nothing
//
// Types: 1 dir, 2 file, 3 symlink, 4 hardlink, 5 fifo, 6 char device, 7
// block device; sockets are not recorded. Node 0 is the root directory
// (the volume directory itself); every other node names its parent by
// index. Blocks are listed in increasing index, gap = index − previous
// index − 1 (first: the index); delta = chunk − previous chunk − 1
// (previous starts at −1). mode holds permission, setuid, setgid and
// sticky bits; mtime is restored, ctime and inode are the writer's and
// serve change detection only. A hardlink node shares its target file's
// data and metadata.
//
// Decoding validates everything before a single file is touched, and
// rejects with ErrCorrupt: a parent that is not an earlier directory node
// (so no path runs through a symlink or a file), a name that is empty,
// ".", "..", longer than 255 bytes or contains "/" or NUL, a name used
// twice in one directory, a hardlink to anything but an earlier file, a
// block outside its file or out of order, a chunk whose plaintext length
// differs from its block's, a reference outside the chunk or pack table, a
// duplicate chunk ID, mode bits beyond 07777, unknown types or flags,
// trailing bytes. Limits: stored manifest and decoded body 256 MiB, header
// 64 KiB, 4 Mi nodes, 16 Mi chunks, 1 Mi packs, file size 16 TiB, symlink
// target 4095 bytes, 1024 xattrs per node of at most 64 KiB each. Every
// count is checked against the bytes that remain before anything is
// allocated, so memory follows the real input, never a claim in it.
//
// The real input is the stored object, not the decompressed body, so the
// body is bounded by what is stored too: it may decompress at most 32
// times (plus 1 MiB), and hold at most one node per stored byte (plus
// 64 Ki), one chunk and one pack per 16 stored bytes (plus 1024: their
// IDs are random and do not compress) and 8 block references per stored
// byte (plus 1 Mi). Real manifests take 11-16 stored bytes per node and
// decompress 3-5 times (at least 2.7 bytes per node and 16 times for
// sequentially named empty files with coarse timestamps), so the bounds
// only ever meet forged ones; decoding costs at most about 200 bytes of
// memory per stored byte (a real manifest about 15), where a 1 MB forged
// manifest of 4 Mi FIFOs once cost 2.9 GB. Create checks the manifest it
// writes against the same bounds, so it never publishes one it cannot read.
//
// # Create
//
// Create(volume, dir, Parent) walks dir through directory descriptors
// (openat with O_NOFOLLOW; files are opened with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so nothing outside the tree is ever
// read. A regular file is unchanged — its parent chunk list is reused and
// it is not opened — when its size, mtime, ctime and inode equal those
// recorded either in the stat cache (if the cache belongs to the parent
// snapshot) or else in the parent manifest, and its mtime and ctime lie
// more than 100 ms (2 s for timestamps without a sub-second part) before
// the moment those were recorded (the start of the Create that wrote
// them): a file changed within the timestamp granularity of that moment
// may change again without its timestamps moving, so it is read again. Other files are read block by block — every block is a job
// for any of GOMAXPROCS workers, so one large file uses every core — with
// pread into per-worker buffers; each block is hashed, looked up, and only
// if the store lacks it compressed, sealed and appended to the pack being
// filled. Options.Transfers/2 packs (2 by default, at most 4) upload
// while the next fills, each followed by its index; memory is about
// (uploads + 1) × 17 MiB plus 3 MiB per worker, whatever the volume size. Then the stat cache is
// written, and last the manifest, with PutIfAbsent.
//
// # Stat cache
//
// A local file (never in the store, never inside the volume directory)
// that says: at time T the file at each path had this size, mtime, ctime
// and inode and held the content snapshot S records for it. Create writes
// it (T = its start) for the snapshot it makes; Restore writes it (T = when
// it took the stats, after the swap) for the snapshot it restored. It
// exists because after a restore the manifest's inodes and ctimes are
// another host's. Format: "PVSC" ‖ version ‖ str snapshot ‖ source byte
// ('c' or 'r') ‖ varint T ‖ uvarint count ‖ count × (str path ‖ uvarint
// size ‖ varint mtime ‖ varint ctime ‖ uvarint inode) ‖ BLAKE3-256 of all
// before. A missing or damaged cache only costs re-reading. For a cache
// written by Restore only the mtime must be that old: Restore owned
// the staging directory until it took the stats, and it set every mtime to
// the recorded value, so any later write moves it.
//
// # Restore
//
// Restore(volume, id, dir) loads and validates the manifest, then builds
// the tree in a staging directory beside dir (.<base>.portvol-restore-*):
// directories, files created O_EXCL and ftruncated to their size (holes
// stay holes; zero 4 KiB pages inside blocks are skipped too), links and
// special files. Contents come from concurrent ranged GETs (adjacent
// chunks of a pack coalesced into ranges of up to 8 MiB), each chunk
// verified and written with pwrite to every block that uses it, with
// O_DIRECT where the filesystem allows (the data bypasses the page cache;
// a file's sub-page tail goes through it). Then
// owner, mode, xattrs and mtime (children before their directories, owner
// before mode, mtime last), one syncfs, and renameat2(RENAME_EXCHANGE) of
// the staging directory with dir (or a plain rename if dir does not exist),
// an fsync of the parent, removal of the old tree, and the stat cache. On
// any error before the swap the staging directory is removed and dir is
// untouched.
//
// When dir holds an older snapshot of the volume (RestoreOptions.Previous,
// or the snapshot the stat cache names), chunks of that snapshot are read
// from the local files instead of fetched, and verified by ID first (a
// mismatch falls back to the store). Files the stat cache shows unchanged,
// with identical content and metadata in the new snapshot, are hardlinked
// into the staging directory whole. Only the missing chunks are fetched.
//
// # Garbage collection: what this package promises package prune
//
// refs.go is the one place that says what a snapshot keeps alive
// (Repo.References: the manifest, its packs, the prefix of pack indexes
// left by Creates from it) and which keys are this package's objects
// (Objects, Classify); prune parses neither keys nor manifests itself, so a
// new format version extends refs.go and prune follows. Forget deletes a
// manifest. guard.go is the writer's half of prune's two-step collection
// (prune/doc.go has the argument): with Options.Fossils set, Create reuses
// no pack that a pending collection lists or that is missing, re-checks
// right before writing its manifest (the parent manifest exists, every
// other pack exists, none is listed) and otherwise fails with
// ErrCollected having published nothing; a retry that would recreate a
// listed pack under the same name (plain stores are deterministic)
// reorders the pack's records. With CreateOptions.SkipUnchanged a tree
// identical to the parent's writes nothing (Manifest.Unchanged).
//
// # What an unencrypted store may plant
//
// Whoever can write to an unencrypted store can forge its manifests (the
// seal of a plain store is a checksum, not a signature). Restore therefore
// refuses, with ErrPrivileged naming the entries, a snapshot of a plain
// store that holds device nodes (character or block), files with the
// setuid or setgid bit or files with capabilities (the security.capability
// xattr): each would hand whoever runs in the container privileges on the
// host's devices or beyond its own user. A setgid directory only passes its
// group on and the sticky bit restricts, so both are restored; so are
// FIFOs, symlinks (restore never follows them) and every other xattr. The
// host lifts the rule with Options.RestorePrivileged (portvol serve
// --restore-privileged, portvol export --restore-privileged) when it trusts
// everyone who can write to the store. Volume options cannot lift it: they
// live in the same store. Encrypted stores authenticate every manifest
// with the key, so their snapshots restore in full.
//
// # Versions
//
// FormatVersion (1) is in the config, every manifest, index and stat
// cache. A reader refuses versions it does not know. Changing any encoding
// above means a new version; the golden files in testdata/ pin version 1.
// A store whose config has a newer version is neither read nor written
// (Open and Init fail with ErrUnsupportedVersion, naming both versions):
// an older portvol cannot know the newer format's invariants, so it must
// not add to such a store.
package snapshot
