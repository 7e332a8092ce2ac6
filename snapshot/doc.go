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
// or the environment. It imports the transfer root package, klauspost's
// zstd and S2, BLAKE3 and x/sys only. It runs on Linux only (openat2, renameat2, syncfs).
//
// # Store layout
//
//	config                                   store configuration (JSON, plaintext)
//	packs/<xx>/<pack-id>                     packed chunks (immutable)
//	snapshots/<name>/<snapshot-id>           manifests (immutable, created with PutIfAbsent)
//	index/<name>/<parent>/<pack-id>          pack indexes (immutable)
//
// <pack-id> is the lower-case hex BLAKE3-256 of the pack object's bytes and
// <xx> its first two digits. Packs hold chunks or list parts, never both. <snapshot-id> is the UTC start time and 64
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
//	{"format": "portvol-snapshot-store", "version": 2,
//	 "store_id": 32 hex digits (16 random bytes),
//	 "chunking": "fixed", "block_size": 16384,
//	 "compression": "s2" | "zstd",
//	 "encryption": "none" | "aes-256-gcm",
//	 "key_check": 64 hex digits (encrypted stores only)}
//
// Unknown fields are rejected; a version above FormatVersion is reported as
// ErrUnsupportedVersion. block_size is a power of two from 4 KiB to 8 MiB
// (64 KiB to 8 MiB in a version 1 config, whose compression is "zstd").
// compression names the codec new chunks get; every reader decodes every
// codec, since each chunk reference names its own.
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
// # Chunking: fixed, aligned blocks of 16 KiB
//
// Each regular file is cut into aligned blocks of block_size (16 KiB by
// default); the last block is shorter. A block that is all zero is a hole:
// nothing is stored and no list part mentions it. Blocks inside holes of a
// sparse file (SEEK_DATA/SEEK_HOLE) are not even read.
//
// Why fixed blocks and not content-defined chunking: databases update 8 KiB
// pages in place, so block boundaries never shift; fixed blocks cost
// nothing to find, split one large file across all cores, and map to
// ranged reads on restore. Format 1 measured it on a PostgreSQL 15 data
// directory (pgbench -s 20 and -s 50, before and after 15 s of pgbench):
// content-defined chunking (restic's sizes, or 128K/256K/1M) found no
// more unchanged data than fixed blocks of the same size, at ~1.5 GB/s
// per core of extra work.
//
// Why 16 KiB (format 1 used 1 MiB): scattered page writes dirty nearly
// every large block, so 1 MiB blocks upload ~28× what changed. Measured
// with `go run ./bench/formatstudy` (make bench-format) on 1 GiB of
// half-empty 8 KiB pages (4 KiB random, 4 KiB zero) after 2048 scattered
// 8 KiB page writes (16 MiB), S2 compression, list parts of 64 blocks:
//
//	block   changed chunks  their data  list parts  upload / changed
//	8 KiB   2048            8.0 MiB     3.3 MiB     0.71
//	16 KiB  2034            15.9 MiB    2.3 MiB     1.14
//	32 KiB  1999            31.3 MiB    1.3 MiB     2.04
//	64 KiB  1936            60.6 MiB    0.7 MiB     3.83
//	256 KiB 1624            203.4 MiB   0.2 MiB     12.72
//	1 MiB   899             450.4 MiB   0.0 MiB     28.15
//
// and on PostgreSQL 15 relation files (pgbench -i -s 20 with the filler
// column set to random base64 text, so the table compresses like real
// data, 322 MiB) after 15 s of pgbench (2 clients, 673 tps), bytes in
// chunks not present before, S2:
//
//	8 KiB 72.9 MiB, 16 KiB 109.4 MiB, 32 KiB 153.4 MiB, 64 KiB 191.8 MiB,
//	256 KiB 207.0 MiB, 1 MiB 206.8 MiB
//
// 16 KiB keeps a scattered change within 2× of its size (1.14× above)
// at half the chunk count of 8 KiB (a 10 GB volume has 650 000 chunks at
// 16 KiB): every chunk costs a reference in a list part (~41 bytes) and
// about 60 bytes of memory while a snapshot is made or restored.
// Restores do not pay for the small chunks: see Restore.
//
// # Compression
//
// A chunk is stored compressed unless that saves less than 1/32 of its
// size, in which case it is stored raw. New stores use S2
// (klauspost/compress/s2, default level); "zstd" (SpeedFastest) can be
// chosen at Init. Measured on 16 KiB chunks, one core, the machine shared
// (bench/formatstudy):
//
//	data                            codec         stored  compress  decompress
//	half-empty pages                zstd fastest  51.0 %  0.2-1.1 GB/s 15 GB/s
//	                                s2            50.1 %  5.1 GB/s  5.2 GB/s
//	                                lz4           50.6 %  1.7 GB/s  5.7 GB/s
//	pgbench, random-text filler     zstd fastest  52.5 %  0.18 GB/s 0.73 GB/s
//	                                s2            72.2 %  1.3 GB/s  5.2 GB/s
//	                                lz4           72.2 %  0.26 GB/s 5.4 GB/s
//	random base64 text              all           100 %   1.4-3.3 GB/s
//
// zstd stores text-like pages ~30 % smaller, but compresses 7× and
// decompresses 7× slower: on two cores a 1.4 GB database costs ~4.5 s of
// zstd CPU to snapshot and ~2 s to restore, against ~1 s and ~0.3 s with
// S2, while the extra ~0.3 GB uploads in well under a second on a local
// network. A handoff waits for both ends, so S2 is the default; LZ4
// (pierrec/lz4) is no smaller than S2 and slower. The price shows on
// pgbench's own tables, whose blank filler zstd's entropy coder squeezes
// ~20×: a pgbench -s 50 store takes 204 MiB with S2 against 107 MiB
// with zstd (make bench-snapshots, -compression zstd); portvol init
// --compression zstd chooses zstd for a store.
//
// # Chunk IDs, records and packs
//
// A chunk's ID is BLAKE3-256 of its plaintext, keyed with the chunk-ID key
// when the store is encrypted, so IDs reveal nothing about the data. Its
// record in a pack is the stored bytes themselves in a plain store (the
// ID already verifies them), or seal(stored, ad = chunk ID) in an
// encrypted one. A list part (below) is stored the same way, its ID being
// the (keyed) BLAKE3-256 of its plaintext; parts are never compressed.
//
// A pack is the concatenation of records, nothing else; packs are filled
// to at least 16 MiB (the last pack of a run may be smaller) and never
// exceed 1 GiB. Create gives each worker a run of up to 64 adjacent
// blocks of one file (256 of 16 KiB blocks: 4 MiB), and the records of a
// run are appended together, so a file's data lies in order in its packs. Every chunk is verified
// before use: in an encrypted store the record is authenticated (its
// associated data is the chunk ID, so only a key holder could have
// sealed it under that ID), in a plain one the ID of the plaintext is
// recomputed; either way it is decompressed into at most its plaintext
// length and the length checked. Verify recomputes every ID in both.
//
// A chunk reference, wherever it appears, is chunk ID(32) ‖ uvarint pack
// ‖ uvarint offset ‖ uvarint length ‖ codec byte (0 raw, 1 zstd, 2 S2); the
// plaintext length is that of the block it fills.
//
// # Pack indexes
//
// After each pack, Create stores its index under
// index/<name>/<parent>/<pack-id>: "PVSI" ‖ version(2) ‖
// seal(payload, ad = "PVSI" ‖ version ‖ key), payload = pack ID(32) ‖
// uvarint pack size ‖ uvarint count ‖ count × (ID(32) ‖ uvarint
// offset ‖ uvarint length ‖ uvarint raw length ‖ flags byte: the codec,
// plus 0x10 in every entry of a pack of list parts). A Create knows
// which chunks and parts the store has from the parent manifest plus the
// indexes under its own <parent> prefix, which are exactly the packs of
// earlier attempts from the same parent — so a re-run after an
// interruption uploads only what is missing, and a host without any
// local cache still deduplicates against the parent. Chunks held only by
// other volumes or older snapshots are uploaded again (harmless
// duplicates, reclaimable by prune). A leftover index is used only if its
// pack exists with the size the index records (one Stat per pack): an
// interrupted run's packs may have been cleaned up by hand, and a
// snapshot must never refer to a pack that is not there. The parent's
// packs are trusted: they belong to a published snapshot, which nothing
// in portvol deletes (portvol verify checks them). Version 1 indexes are
// ignored.
// No snapshot needs an index: they only serve interrupted runs.
//
// # Manifests
//
// snapshots/<name>/<id> is
//
//	"PVSM" ‖ version(2) ‖ le32 n ‖ seal(header, ad_h) [n bytes] ‖ seal(zstd(body), ad_b)
//	ad_h = "PVSM" ‖ version ‖ "h" ‖ key
//	ad_b = "PVSM" ‖ version ‖ "b" ‖ key ‖ BLAKE3-256(header)
//
// so List reads the header with one short ranged GET, and a body cannot be
// paired with another header. Encoding primitives: uvarint and varint
// (zig-zag) as in encoding/binary; str = uvarint length ‖ bytes.
//
// header: uvarint version(2), str id, str volume, str parent ("" for
// none), str host, uvarint generation, varint started and finished (Unix
// ns), uvarint block size, 13 × uvarint statistics (files, dirs, symlinks,
// hardlinks, others, skipped, bytes, data bytes, files read, bytes read,
// new chunks, new bytes, uploaded bytes), uvarint body length.
//
// body:
//
//	uvarint P, P × pack ID(32)            the packs holding this snapshot's list parts
//	uvarint N, N × node
//	node = [uvarint parent ‖ str name, except node 0] ‖ type byte ‖
//	       (hardlink: uvarint target node) |
//	       (uvarint mode ‖ uvarint uid ‖ uvarint gid ‖ varint mtime ‖ varint ctime ‖
//	        uvarint inode ‖ per type ‖ uvarint X ‖ X × (str name ‖ str value))
//	file: uvarint size ‖ uvarint K ‖ K × (uvarint span gap ‖ part ID(32) ‖
//	      uvarint pack ‖ uvarint offset ‖ uvarint length)
//	symlink: str target; char/block device: uvarint rdev; dir, fifo: nothing
//
// Types: 1 dir, 2 file, 3 symlink, 4 hardlink, 5 fifo, 6 char device, 7
// block device; sockets are not recorded. Node 0 is the root directory
// (the volume directory itself); every other node names its parent by
// index. mode holds permission, setuid, setgid and sticky bits; mtime is
// restored, ctime and inode are the writer's and serve change detection
// only. A hardlink node shares its target file's data and metadata.
//
// # List parts
//
// A file's chunk list is cut into spans of F = 64 blocks (1 MiB at 16
// KiB); span s covers blocks s·F to s·F+F−1. The file node lists, for
// each span with data, the list part describing it (spans in increasing
// order, gap = span − previous span − 1, the first: the span; pack
// indexes the body's pack table). A list part's plaintext is
//
//	uvarint Q, Q × pack ID(32)      the packs its chunks are in
//	uvarint n, n × (uvarint block gap ‖ chunk reference, pack indexing the Q packs)
//
// with blocks in increasing order inside the span (gap = block − previous
// block − 1, the first relative to s·F). A part names no file and no
// position, so a span whose chunks did not change is the same part —
// same ID — in the next snapshot and is referenced, not stored again: a
// snapshot stores the parts of the spans that changed, and re-uploads
// only its body (one ~41-byte reference per MiB of file data, against
// one per 16 KiB chunk without parts: 160 KiB for 4 GiB of data).
//
// Decoding validates everything before a single file is touched, and
// rejects with ErrCorrupt: a parent that is not an earlier directory node
// (so no path runs through a symlink or a file), a name that is empty,
// ".", "..", longer than 255 bytes or contains "/" or NUL, a name used
// twice in one directory, a hardlink to anything but an earlier file, a
// span or block outside its file or out of order, a reference outside
// its pack table, a record longer than a block can need, an unknown
// codec, a list part whose plaintext does not hash to its ID, one chunk
// ID used with two plaintext lengths, mode bits beyond 07777, unknown
// types, trailing bytes. Limits: stored manifest and decoded body 256 MiB,
// header 64 KiB, 4 Mi nodes, 16 Mi parts, 1 Mi packs, file size 16 TiB,
// symlink target 4095 bytes, 1024 xattrs per node of at most 64 KiB
// each, 64 entries and 64 packs per part. Every count is checked against
// the bytes that remain before anything is allocated, so memory follows
// the real input, never a claim in it.
//
// Load fetches the list parts (adjacent parts of a pack in one ranged
// GET) and reassembles the chunk table and every file's block list.
// Objects lists what a snapshot needs — its manifest, the packs of its
// list parts and the packs their chunk references name — streaming the
// parts, for garbage collection.
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
// read.
//
// # Change discovery
//
// With a ChangeSource (CreateOptions.Changes; the btrfs backend derives
// one from extent generations), a file at the same path in the parent is
// asked about: unchanged files keep the parent's chunk list and are not
// opened, whatever their timestamps; changed files are read only in the
// ranges the source names, rounded out to blocks, plus the old last
// block and everything past it when the size changed; the other blocks
// keep the parent's chunks. Without one, a regular file is unchanged —
// its parent chunk list is reused and it is not opened — when its size,
// mtime, ctime and inode equal those recorded either in the stat cache
// (if the cache belongs to the parent snapshot) or else in the parent
// manifest, and its mtime and ctime lie more than 100 ms (2 s for
// timestamps without a sub-second part) before the moment those were
// recorded (the start of the Create that wrote them): a file changed
// within the timestamp granularity of that moment may change again
// without its timestamps moving, so it is read again. A changed file is
// then read whole, but only blocks whose chunk the store lacks are
// uploaded: reads cost the changed files, uploads what changed.
//
// With a ChangeSource, Create loads of the parent (a format 2 snapshot
// of the same block size) only the manifest, asks the source about every
// file, and then fetches only the list parts of the spans that changed:
// a span the source reports unchanged, in a file matched by exactly one
// file of the new tree, keeps the parent's list part by reference —
// neither fetched, decoded, encoded nor hashed again — and its data bytes
// are the parent's (the statistic is carried over). Files read whole,
// files whose parent node two paths now match (a hardlink broken), and
// spans past a file's new end load their parts as before. So a snapshot
// of a small change fetches, builds and writes list parts in proportion
// to the spans the change touched, not to the volume. Its price: chunks
// of the spans not loaded are unknown to this Create, and new data equal
// to one of them is stored again (a duplicate prune can reclaim). A
// Create that must check the parent's packs against a pending
// collection (guard.go) loads the whole parent first, as does one
// without a ChangeSource or with Live.
//
// Reading: runs of up to 64 adjacent blocks, or 4 MiB of smaller ones,
// are jobs for any of
// GOMAXPROCS workers, so one large file uses every core; each run is one
// pread into a per-worker buffer; each block is hashed, looked up, and
// only if the store lacks it compressed, sealed and appended to the pack
// being filled. Options.Transfers/2 packs (2 by default, at most 4)
// upload while the next fills, each followed by its index. Then the list
// parts are cut; parts the store lacks go into packs of their own. Then
// the stat cache is written, and last the manifest, with PutIfAbsent.
// Memory: about (uploads + 1) × 17 MiB plus 8 MiB per worker, plus ~90
// bytes per chunk of the volume (chunk table 52, index ~20, block list
// 16; the parent's chunks included), so 57 MiB per 10 GiB of data: below
// 150 MB at 10 GiB (655 360 chunk references, TestPeakRSS), but not
// bounded for multi-terabyte volumes. The format allows bounded memory —
// list parts are self-contained and ordered, so Create and Restore could
// stream them file by file — but the engine still holds the chunk table.
//
// When the new tree, its metadata (except ctimes and inode numbers) and
// its content equal the parent's, Create sets Manifest.Unchanged; with
// CreateOptions.SkipUnchanged it then stores nothing at all and returns
// the parent, so that an interval without change publishes nothing.
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
// stay holes), links and special files. Contents come from concurrent
// ranged GETs (adjacent chunks of a pack coalesced into ranges of up to
// 8 MiB; 16 in flight by default, see restoreFetchers), each chunk
// verified and then gathered with the chunks that follow it in the same
// file into runs of up to 4 MiB, each written with
// one pwrite: a run of at least 1 MiB with O_DIRECT where the filesystem
// allows (the data bypasses the page cache; a file's sub-page tail goes
// through it), a shorter one through the page cache, left to the final
// syncfs (restore_write.go, minDirect, has the measurements). A
// gap of at most 128 KiB of hole between two chunks of a run is written
// as zeros; longer zero runs stay holes. Small writes are what made
// format 1 restores slow (it skipped every zero 4 KiB page): measured
// (bench/formatstudy -disk), O_DIRECT writes of 256 MiB then fsync on
// this machine's disk, shared:
//
//	4 KiB 22 MB/s, 16 KiB 48 MB/s, 64 KiB 195 MB/s, 256 KiB 302 MB/s,
//	1 MiB 424 MB/s, 4 MiB 462 MB/s
//
// so a split costs about what writing 128 KiB more does. A run can only
// be as long as the piece of one file that lies together in a pack: with
// 16 KiB blocks and Create's runs of 64 blocks that was 1 MiB, and a cold
// restore of a PostgreSQL data directory (pgbench -s 50, 1.4 GB) over a
// local S3 server wrote it in 1 MiB pieces of alternating files. Create's
// runs of 4 MiB (2026-12, loaded machine, alternating runs of the same
// store, 7 each; an ad-hoc harness: versitygw on 127.0.0.1, import,
// caches dropped, Restore): median 6.4 s against
// 8.8 s with 1 MiB runs, individual runs 2.9–12.3 s; suggestive, not
// conclusive, at a cost of 6 MiB more memory per worker. A snapshot taken
// after scattered page writes keeps each changed block in a new pack and
// its neighbours in the parent's: a cold restore fetches such short
// stretches (islands) first, verified, into memory (up to 256 MiB), and a
// run that reaches one takes its data and goes on (restore_islands.go);
// islands no run took are written at the end. Then owner, mode,
// xattrs and mtime (children before their directories, owner before
// mode, mtime last), one syncfs, and renameat2(RENAME_EXCHANGE) of the
// staging directory with dir (or a plain rename if dir does not exist),
// an fsync of the parent, removal of the old tree, and the stat cache.
// On any error before the swap the staging directory is removed and dir
// is untouched.
//
// When dir holds an older snapshot of the volume (RestoreOptions.Previous,
// or the snapshot the stat cache names), chunks of that snapshot are read
// from the local files instead of fetched, and verified by ID first (a
// mismatch falls back to the store). Files the stat cache shows unchanged,
// with identical content and metadata in the new snapshot, are hardlinked
// into the staging directory whole. Only the missing chunks are fetched.
// The local chunks are copied first, in spans of up to 2 MiB of the old
// file read with one pread, and a run writes zeros over a gap of up to
// 128 KiB whose blocks are holes or fetched afterwards (the changed
// pages), so scattered changes do not cut it into single blocks; the
// fetch then writes over the zeros. Measured (export --force onto the
// previous copy of PostgreSQL pgbench -s 50 after 15 s of pgbench, 835 MB
// reused, 117 MB fetched, caches dropped, a 2-core AMD EPYC VM,
// 2026-12-07): 59k writes of 16 KiB took 5.4–5.9 s; in spans with the
// gaps filled, and the short runs through the page cache, 2.0–2.4 s.
//
// # Garbage collection: what this package promises package prune
//
// refs.go is the one place that says what a snapshot keeps alive
// (Repo.References: the manifest, its packs — in format 2 the packs of
// its list parts and the packs their chunk references name, read from
// the parts — and the prefix of pack indexes left by Creates from it) and which keys are this package's objects
// (Objects, Classify); prune parses neither keys nor manifests itself, so a
// new format version extends refs.go and prune follows. Forget deletes a
// manifest. guard.go is the writer's half of prune's two-step collection
// (prune/doc.go has the argument): with Options.Fossils set, Create reuses
// no pack that a pending collection lists or that is missing, re-checks
// right before writing its manifest (the parent manifest exists, every
// other pack exists, none is listed) and otherwise fails with
// ErrCollected having published nothing; a retry that would recreate a
// listed pack under the same name (plain stores are deterministic)
// reorders the pack's records (chunk packs; a list-part pack is rewritten
// only by a retry after an interruption, which is not yet guarded this
// way). With CreateOptions.SkipUnchanged a tree identical to the
// parent's writes nothing (Manifest.Unchanged).
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
// # Restore in place
//
// With RestoreOptions.InPlace, dir must hold exactly snapshot Previous
// (for example a writable btrfs snapshot of the subvolume Previous was
// restored into), and Restore brings it to the new snapshot without a
// staging tree: entries Previous has and the new snapshot lacks at the
// same path with the same type are removed (deepest first), new ones
// created, kept files truncated or extended, blocks whose chunk changed
// written (fetched and verified as above), blocks that became holes
// punched, metadata set (xattrs the new snapshot lacks removed), one
// syncfs. Hardlinked files are rewritten whole. Only the list parts of
// spans that differ are loaded, of both snapshots: a span of a kept file
// whose part has the same ID in both holds the same chunks at the same
// blocks, so nothing there is fetched, decoded or compared (both
// manifests' bodies are still read: one ~41-byte reference per MiB of
// data). Everything is validated before the first entry is removed. The
// cost follows the delta; it is atomic only with the caller's help:
// write into a snapshot, then swap it in. Repo.Holds says whether a
// directory may be such a target: its stat cache names the snapshot,
// every file's stat is still the one recorded, and every entry is the
// snapshot's (portvol export calls it on a writable btrfs snapshot of
// DST_DIR).
//
// # Versions
//
// FormatVersion (2) is in the config, every manifest and every index;
// the stat cache has its own version (1). A reader refuses versions it
// does not know. Changing any encoding above means a new version; the
// golden files in testdata/ pin both versions, and testdata/store-v1-*
// are whole stores written by version 1.
//
// Version 1 differs in: 1 MiB default blocks (64 KiB to 8 MiB), zstd
// only, and a manifest body holding the whole chunk table, "uvarint P, P ×
// pack ID(32), uvarint C, C × (chunk ID(32) ‖ uvarint pack ‖ uvarint
// offset ‖ uvarint length ‖ uvarint raw length ‖ flags, 1 = zstd)", with
// each file's blocks as "uvarint B ‖ B × (uvarint block gap ‖ varint
// chunk delta)" (delta = chunk − previous chunk − 1, previous starting at
// −1). Version 1 snapshots stay readable: Load, List, Restore (onto
// anything), Verify, Objects and Create with a version 1 parent all work.
//
// A version 1 store gets version 2 snapshots, with 16 KiB blocks and S2,
// and keeps its config (version 1; its block_size describes its version 1
// snapshots). Why: one writer, and the gain reaches existing stores
// without a migration; the store's identity and keys are unchanged.
// The cost: the first version 2 snapshot of each volume uploads it whole
// (the chunk grid changed), and a host still running a version 1 portvol
// cannot restore a volume whose head is a version 2 snapshot — it fails
// with ErrUnsupportedVersion and changes nothing, so upgrade every host
// before moving volumes. A store whose config has a newer version than
// this portvol knows is neither read nor written (Open and Init fail
// with ErrUnsupportedVersion, naming both versions).
package snapshot
