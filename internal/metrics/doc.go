// Package metrics turns what portvol sees into Prometheus metrics: it
// implements the driver's Observer (mounts, leases, snapshots, restores)
// and the transfer/meter reports (bytes moved, whether the store answers),
// and serves /metrics and /healthz for `portvol serve --metrics-addr`.
//
// Metrics (names and labels are stable; the README lists them):
//
//	portvol_snapshot_last_success_timestamp_seconds{volume}
//	    the time up to which this host's writes to the volume are in a
//	    published snapshot: the last publication by this host, or the time
//	    it took the volume (its copy then equals the head). Present while
//	    this host holds the volume's lease.
//	portvol_snapshot_interval_seconds{volume}
//	    the volume's snapshot_interval while it is mounted here (0: off).
//	portvol_snapshot_failures_total{volume}
//	    failed periodic snapshots, and failed attempts of the final
//	    snapshot and release after the last unmount.
//	portvol_lease_held{volume}               1 while this host holds it, else 0.
//	portvol_restore_progress_ratio{volume}   0..1 of the running or last restore.
//	portvol_store_reachable                  1 if the store answered the last request.
//	portvol_transfer_bytes_total{direction="up"|"down"}
//	portvol_mount_duration_seconds{result="ok"|"error"}   histogram of Mount calls.
//	portvol_build_info{version,revision,goversion}        always 1.
//
// plus the Go runtime's and the process's standard collectors.
//
// It owns the metric names and their meaning. It must not know the
// driver's internals (it sees the Observer calls only) nor any store. It
// keeps its own registry: no global state.
package metrics
