package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The takeover note names the lost host's last published snapshot (what
// the taker restored), also after the taker has published its own: on
// the taker and on every other host.
func TestTakeoverNoteNamesTheLostHostsLastSnapshot(t *testing.T) {
	requireRoot(t)
	es, _ := hosts(t, time.Second, nil, "hostA", "hostB", "hostC")
	a, b, c := es[0], es[1], es[2]
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"takeover": "auto"}})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("a"), 0o644) })
	lost := a.status("v")["head_snapshot"].(string)
	a.ok("VolumeDriver.Mount", mountID("v", "a2"))
	a.stop() // dies holding the lease

	b.publish("v", "b1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("b"), 0o644) })
	newest := b.status("v")["head_snapshot"].(string)
	if newest == lost || lost == "" {
		t.Fatalf("B published nothing new: head %q, A's last %q", newest, lost)
	}
	for _, e := range []*env{b, c} {
		note, _ := e.status("v")["taken_over"].(string)
		if !strings.Contains(note, "taken over from host hostA") || !strings.Contains(note, "after snapshot "+lost) || strings.Contains(note, newest) {
			t.Errorf("%s's takeover note: %q; want it to name hostA's last snapshot %s, not hostB's %s", e.host, note, lost, newest)
		}
	}
}
