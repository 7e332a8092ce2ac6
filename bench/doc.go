// Command bench is `make bench`: it measures portvol's snapshot commands
// against restic and a tar | zstd | PUT pipeline in the same run, against
// the same local S3 server (versitygw on 127.0.0.1), and writes the result
// as a markdown table into docs/benchmarks.md between the markers
// <!-- bench:snapshots --> and <!-- /bench:snapshots -->, leaving the rest
// of the file alone.
//
// Workloads: a PostgreSQL 15 data directory made by initdb and
// pgbench -i -s 50 (stopped cleanly, as at the final snapshot on unmount),
// the same after 15 s of pgbench, and 1 GiB of incompressible files.
// Operations: initial snapshot, no-change snapshot, snapshot after
// pgbench, cold restore (empty target, empty caches), restore onto the
// previous copy. Every run uses fresh repositories; the table reports
// medians over the runs and the peak RSS of each tool's processes.
//
// It owns: nothing the plugin uses. It must not be imported. It runs as
// root on Debian (it installs missing packages with apt-get, runs
// PostgreSQL as the postgres user and drops the page cache), and it sends
// traffic only to the versitygw it starts on 127.0.0.1.
//
// Its own subcommands "s3put" and "s3get" are the PUT and GET ends of
// the tar pipeline: a streaming multipart upload with minio-go (unsigned
// payload, 16 MiB parts, 4 in flight) and a single streaming GET.
package main
