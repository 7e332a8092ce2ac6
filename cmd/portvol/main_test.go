package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// reexecEnv makes the test binary run as portvol itself: its arguments
// (after "--") are the command line. Tests that kill a process use it.
const reexecEnv = "PORTVOL_TEST_REEXEC"

// observeEnv names a file where a re-executed import appends a line when
// it takes its lease and just before it gives it back.
const observeEnv = "PORTVOL_TEST_OBSERVE"

// baseExitEnv names a step of keeping the --base snapshot at which a
// re-executed import exits (import_base.go, importBaseStep).
const baseExitEnv = "PORTVOL_TEST_BASE_EXIT"

func TestMain(m *testing.M) {
	if os.Getenv(reexecEnv) == "1" {
		os.Exit(reexecMain())
	}
	// Import lock files of the tests' in-process commands stay out of
	// the user's cache directory.
	dir, err := os.MkdirTemp("", "portvol-test-locks-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("PORTVOL_LOCK_DIR", dir)
	// The servers these tests start keep volumes in directories: a
	// host-run portvol with btrfs makes a pool image and leaves it mounted
	// on the host, which the command line's tests do not need
	// (localcopy/btrfs and the integration tests cover btrfs).
	if os.Getenv("PORTVOL_VOLUME_FS") == "" {
		os.Setenv("PORTVOL_VOLUME_FS", "directory")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func reexecMain() int {
	args := os.Args[1:]
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if path := os.Getenv(observeEnv); path != "" {
		importObserver = func(volume string, gen uint64, held bool) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return
			}
			defer f.Close()
			// One write(2) per line under O_APPEND: lines of several
			// processes never interleave.
			_, _ = fmt.Fprintf(f, "%d %d %s %d %t\n", time.Now().UnixNano(), os.Getpid(), volume, gen, held)
			_ = f.Sync()
		}
	}
	if step := os.Getenv(baseExitEnv); step != "" {
		importBaseStep = func(s string) {
			if s == step {
				os.Exit(9)
			}
		}
	}
	return run(context.Background(), args, os.Stdout, os.Stderr)
}
