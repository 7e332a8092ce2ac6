package driver

import "time"

// Observer hears about the few events an operator alerts on: how long
// Mounts take, which leases this host holds, whether snapshots publish,
// how far restores are. cmd/portvol implements it with Prometheus metrics;
// the driver knows no metrics library. Calls come from request handlers
// and background jobs, concurrently, and must not block.
type Observer interface {
	// MountDone: a Mount call of volume took d and ended with err.
	MountDone(volume string, d time.Duration, err error)
	// LeaseHeld: this host now holds volume's lease (true: its copy equals
	// the head, or is being restored to it) or no longer does.
	LeaseHeld(volume string, held bool)
	// SnapshotInterval: volume is mounted here and snapshotted every
	// interval (0: periodic snapshots are off).
	SnapshotInterval(volume string, interval time.Duration)
	// SnapshotDone: a snapshot of volume (periodic, or the final one after
	// the last unmount) was published (err nil) or failed.
	SnapshotDone(volume string, err error)
	// RestoreProgress: a restore into volume's copy has written done of
	// total bytes (total 0: still reading the snapshot).
	RestoreProgress(volume string, done, total uint64)
}

// nopObserver is the Observer of a Config without one.
type nopObserver struct{}

func (nopObserver) MountDone(string, time.Duration, error) {}
func (nopObserver) LeaseHeld(string, bool)                 {}
func (nopObserver) SnapshotInterval(string, time.Duration) {}
func (nopObserver) SnapshotDone(string, error)             {}
func (nopObserver) RestoreProgress(string, uint64, uint64) {}
