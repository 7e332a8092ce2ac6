// Package needs is how tests say what the machine must have: without it
// they skip with the reason, except under CI=true, where a missing
// prerequisite fails the test (CI must run every test).
package needs

import (
	"errors"
	"os"
	"testing"
)

// Missing skips t with why, or fails it under CI=true.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test cannot run: %s; CI must run it", why)
	}
	t.Skip(why)
}

// Btrfs requires root, loop devices and btrfs; available is the caller's
// check of the kernel and tools (localcopy/btrfs.Available, which this
// package does not import so that btrfs's own tests can use it).
func Btrfs(t testing.TB, available func() error) {
	t.Helper()
	if why := btrfsMissing(available); why != "" {
		Missing(t, why)
	}
}

func btrfsMissing(available func() error) string {
	if os.Geteuid() != 0 {
		return "needs root (loop devices, mount, btrfs ioctls)"
	}
	if err := available(); err != nil {
		return err.Error()
	}
	if _, err := os.Stat("/dev/loop-control"); errors.Is(err, os.ErrNotExist) {
		return "no /dev/loop-control: needs loop devices"
	}
	return ""
}
