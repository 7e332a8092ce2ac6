// Command volfs is `make bench-volfs`: what btrfs subvolumes cost a
// database, measured against a plain ext4 directory on the same disk in
// the same run.
//
// It builds one PostgreSQL 15 data directory (initdb, pgbench -i -s 20),
// copies it to each target and runs pgbench (-c 4 -j 2, 25 s) on it:
//
//	ext4 directory        the state directory's own filesystem (baseline)
//	ext4 in a loop image  the loop device's own cost (direct I/O)
//	btrfs ...             subvolumes in portvol's pool (localcopy/btrfs),
//	                      with and without nodatacow, quota groups, mount
//	                      options and PostgreSQL settings a btrfs user
//	                      would choose
//
// and, on the chosen default, the pause that a read-only snapshot every
// 2 s (Freeze, KeepBase: what the periodic snapshot does) imposes on the
// running pgbench, from pgbench's per-transaction latency log, against
// the same run without snapshots. Rounds run every target once, in
// order; ratios are per round (same load), the table shows medians.
//
// It writes the table into docs/benchmarks.md between <!-- bench:volfs -->
// and <!-- /bench:volfs -->. It runs as root on Debian with postgresql-15
// and btrfs-progs, uses loop devices, and must not be imported.
package main
