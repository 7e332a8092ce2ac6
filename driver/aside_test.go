package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnrecordedAsideCopyIsKept: a process killed between moving a copy
// aside (a fence) and recording it leaves a fenced-* directory its record
// does not list; removing the volume must keep it under kept/, not send it
// to the trash with the rest (the randomized driver test's seed 124278
// lost writes cut off by a takeover this way).
func TestUnrecordedAsideCopyIsKept(t *testing.T) {
	e := newEnv(t)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})
	aside := filepath.Join(e.stateDir, "volumes", "v", "fenced-1-20261206T000000Z")
	if err := os.MkdirAll(aside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(aside, "cut-off"), []byte("written before the fence"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("VolumeDriver.Remove", map[string]any{"Name": "v"})
	kept, err := filepath.Glob(filepath.Join(e.stateDir, "kept", "v.fenced-1-20261206T000000Z.*", "cut-off"))
	if err != nil || len(kept) != 1 {
		entries, _ := os.ReadDir(filepath.Join(e.stateDir, "kept"))
		t.Fatalf("the unrecorded fenced copy was not kept under kept/ (found %v, kept/ holds %v, err %v)", kept, entries, err)
	}
	if b, err := os.ReadFile(kept[0]); err != nil || !strings.Contains(string(b), "before the fence") {
		t.Fatalf("kept copy: %q, %v", b, err)
	}
}
