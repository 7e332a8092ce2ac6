// Package localcopy is where a volume's data lives on this host: one
// interface, Copies, for the local copies of all volumes, with two
// implementations — plain directories (Dir, in this package) and btrfs
// subvolumes (package localcopy/btrfs, in a btrfs state directory or in a
// loop-attached pool image).
//
// # What it owns
//
// Creating, removing and measuring a volume's live copy; size limits;
// freezing an instant of it to read a snapshot from (Freeze), keeping the
// instant of the last published snapshot as the base of the next one
// (KeepBase, Base); where a restore writes (RestoreTarget) and the atomic
// swap that puts a restored copy in place (CommitRestore); moving a copy
// aside (MoveAside). Optional capabilities are optional interfaces:
// ChangeFinder (which byte ranges of which files changed since the base,
// from btrfs extent generations) and Converter (turn a directory volume
// into a subvolume).
//
// # What it must not know
//
// Docker, leases, the object store, the snapshot format, bbolt. It never
// decides when to freeze, restore or move aside, and it does not record
// which published snapshot a base belongs to: the caller records the
// base's Generation beside the snapshot id and compares it with Base()
// before trusting it (a crash between KeepBase and that record must make
// the base unusable, never wrong).
//
// # Consistency
//
// Consistency() says what a frozen instant is worth. Dir has no way to
// freeze a directory: Freeze returns the live directory, and a snapshot
// read from it is file-by-file (ConsistencyFileByFile). A btrfs read-only
// snapshot is one instant of the whole volume (ConsistencyPointInTime):
// what a crash at that instant would have left, which PostgreSQL and every
// database that survives power loss recover from.
//
// # Layout
//
// Dir (today's layout): <root>/volumes/<name>/data, the copies moved aside
// beside it (<root>/volumes/<name>/<aside>), restore targets
// <root>/volumes/<name>/.restore-<random>. The btrfs layout is in
// localcopy/btrfs.
//
// # Sizes
//
// ParseSize reads the sizes Docker users write (20G, 20GB, 20GiB, 512m,
// 1.5T, 1048576): every suffix is binary, as in Docker's own size options
// (--storage-opt size, --shm-size): 20G = 20GB = 20GiB = 20×2^30 bytes.
package localcopy
