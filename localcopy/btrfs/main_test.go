package btrfs

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/portvol/portvol/internal/needs"
)

// The tests need root, btrfs in the kernel and loop devices: they make a
// pool image in a temporary state directory and mount it. Without those
// they skip with the reason, except under CI=true, where they fail.

var (
	poolOnce   sync.Once
	sharedC    *Copies
	sharedErr  error
	sharedDirs []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedC != nil && sharedC.pool != nil {
		if err := sharedC.pool.Unmount(); err != nil {
			println("unmounting the test pool:", err.Error())
			code = 1
		}
	}
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// requireBtrfs skips without root, btrfs or loop devices, except under
// CI=true, where the test fails: CI must run it.
func requireBtrfs(t *testing.T) { needs.Btrfs(t, Available) }

// newStateDir is a state directory on the real disk (not tmpfs: the
// pool image needs direct I/O), removed at the end of the run.
func newStateDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PORTVOL_BTRFS_TEST_DIR")
	if base == "" {
		base = "/var/tmp"
	}
	d, err := os.MkdirTemp(base, "portvol-btrfs-test-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// shared is one 1 GiB pool for the tests that need no pool of their own.
func shared(t *testing.T) *Copies {
	t.Helper()
	requireBtrfs(t)
	poolOnce.Do(func() {
		d := newStateDir(t)
		sharedDirs = append(sharedDirs, d)
		sharedC, sharedErr = Open(context.Background(), Options{StateDir: d, PoolSize: 1 << 30, ForcePool: true})
	})
	if sharedErr != nil {
		t.Fatalf("opening the test pool: %v", sharedErr)
	}
	return sharedC
}
