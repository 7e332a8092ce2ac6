package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `portvol pull --follow` against two plugins on one store: host B's copy
// follows host A's published snapshots (a line per pull), Ctrl-C ends it
// with exit 0, and a follow ends by itself once B mounts the volume.
func TestPullFollow(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting volumes needs root; CI must run this as root")
		}
		t.Skip("mounting volumes needs root")
	}
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	cli(t, "init", "--store", store).ok(t)
	start := func(host string) (sock, state string) {
		sock, state = filepath.Join(dir, host+".sock"), filepath.Join(dir, host)
		s := startServe(t, "--socket", sock, "--state-dir", state, "--host-id", host, "--store", store, "--volume-fs", "directory")
		waitListening(t, sock, s)
		return sock, state
	}
	sockA, _ := start("hostA")
	sockB, stateB := start("hostB")
	mustPost := func(sock, method, body string) string {
		t.Helper()
		code, out := post(t, sock, method, body)
		if code != 200 || strings.Contains(out, `"Err":"`) {
			t.Fatalf("%s %s: %d %s", method, body, code, out)
		}
		return out
	}
	publish := func(data []byte) {
		t.Helper()
		out := mustPost(sockA, "VolumeDriver.Mount", `{"Name":"db","ID":"a"}`)
		var m struct{ Mountpoint string }
		json.Unmarshal([]byte(out), &m)
		if err := os.WriteFile(filepath.Join(m.Mountpoint, "f"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		mustPost(sockA, "VolumeDriver.Unmount", `{"Name":"db","ID":"a"}`)
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(mustPost(sockA, "VolumeDriver.Get", `{"Name":"db"}`), `"lease":"released"`) {
			if time.Now().After(deadline) {
				t.Fatal("A does not release db")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	mustPost(sockA, "VolumeDriver.Create", `{"Name":"db","Opts":{"snapshot_interval":"0"}}`)
	data := bytes.Repeat([]byte("portvol "), 256<<10) // 2 MiB
	publish(data)

	follow := func(ctx context.Context) (*syncBuffer, chan int) {
		out, code := &syncBuffer{}, make(chan int, 1)
		go func() {
			code <- run(ctx, []string{"pull", "--follow", "db", "--interval", "100ms", "--socket", sockB}, out, &syncBuffer{})
		}()
		return out, code
	}
	waitFor := func(out *syncBuffer, n int, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(out.String(), "now holds snapshot") < n {
			if time.Now().After(deadline) {
				t.Fatalf("no line for %s; output so far:\n%s", what, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, code := follow(ctx)
	waitFor(out, 1, "the first pull")
	copy(data[:4096], bytes.Repeat([]byte("x"), 4096))
	publish(data)
	waitFor(out, 2, "the pull of A's second snapshot")
	if got, err := os.ReadFile(filepath.Join(stateB, "volumes", "db", "data", "f")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("B's copy after following differs from A's last snapshot (%v)", err)
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK || !strings.Contains(out.String(), "stopped following volume db") {
			t.Errorf("Ctrl-C: exit %d\n%s", c, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pull --follow does not stop on Ctrl-C")
	}

	out, code = follow(context.Background())
	time.Sleep(300 * time.Millisecond)
	mustPost(sockB, "VolumeDriver.Mount", `{"Name":"db","ID":"b"}`)
	select {
	case c := <-code:
		if c != exitOK || !strings.Contains(out.String(), "this host owns volume db now") {
			t.Errorf("follow when B mounts: exit %d\n%s", c, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pull --follow does not stop when this host owns the volume")
	}
	mustPost(sockB, "VolumeDriver.Unmount", `{"Name":"db","ID":"b"}`)

	if r := cli(t, "pull", "db", "--interval", "1s", "--socket", sockB); r.code != exitUsage {
		t.Errorf("--interval without --follow: %+v", r)
	}
	if r := cli(t, "pull", "--follow", "db", "--interval", "1ms", "--socket", sockB); r.code != exitUsage {
		t.Errorf("--interval 1ms: %+v", r)
	}
}
