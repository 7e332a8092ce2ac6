package main

import (
	"os"
	"testing"
)

// The servers these tests start keep volumes in directories unless a test
// says otherwise: a host-run portvol with btrfs makes a pool image and
// mounts it on the host, which the tests of the command line do not need
// (localcopy/btrfs and the integration tests cover it).
func TestMain(m *testing.M) {
	if os.Getenv("PORTVOL_VOLUME_FS") == "" {
		os.Setenv("PORTVOL_VOLUME_FS", "directory")
	}
	os.Exit(m.Run())
}
