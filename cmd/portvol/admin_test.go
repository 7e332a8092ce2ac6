package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindPluginSocket(t *testing.T) {
	dir := t.TempDir()
	listen := func(path string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	if _, err := findPluginSocket("", dir); err == nil || !strings.Contains(err.Error(), "no running portvol") || !strings.Contains(err.Error(), "--socket") {
		t.Errorf("nothing running: %v", err)
	}
	listen(filepath.Join(dir, "abc", "portvol.sock"))
	if got, err := findPluginSocket("", dir); err != nil || got != filepath.Join(dir, "abc", "portvol.sock") {
		t.Errorf("one managed plugin: %q, %v", got, err)
	}
	listen(filepath.Join(dir, "def", "portvol.sock"))
	_, err := findPluginSocket("", dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "abc", "portvol.sock")) || !strings.Contains(err.Error(), filepath.Join(dir, "def", "portvol.sock")) {
		t.Errorf("two managed plugins: %v", err)
	}
	listen(filepath.Join(dir, "portvol.sock"))
	if got, err := findPluginSocket("", dir); err != nil || got != filepath.Join(dir, "portvol.sock") {
		t.Errorf("standalone: %q, %v", got, err)
	}
	if got, _ := findPluginSocket("/x.sock", dir); got != "/x.sock" {
		t.Errorf("--socket: %q", got)
	}
}

// runCLI runs one portvol command line in this process.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// The commands against a running portvol serve (no mounts: no root needed).
func TestOwnershipCommands(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "pv.sock")
	s := startServe(t, "--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--host-id", "hostA")
	waitListening(t, sock, s)
	if code, body := post(t, sock, "VolumeDriver.Create", `{"Name":"db"}`); code != 200 {
		t.Fatalf("Create: %d %s", code, body)
	}

	code, out, errOut := runCLI("status", "--socket", sock)
	if code != 0 || !strings.Contains(out, "VOLUME") || !strings.Contains(out, "db") || !strings.Contains(out, "ready") {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("status", "db", "--json", "--socket", sock)
	var vols []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &vols) != nil || len(vols) != 1 || vols[0]["name"] != "db" || vols[0]["lease"] != "none" || vols[0]["local"] != "ready" {
		t.Errorf("status --json: %d %s", code, out)
	}
	if code, _, errOut = runCLI("status", "nope", "--socket", sock); code != exitError || !strings.Contains(errOut, `"nope" does not exist`) ||
		!strings.Contains(errOut, "check the name (portvol status lists this host's volumes") {
		t.Errorf("status of an unknown volume: %d %s; want what to do", code, errOut)
	}
	if code, out, errOut = runCLI("takeover", "db", "--socket", sock); code != 0 || !strings.Contains(out, "nothing to take over") {
		t.Errorf("takeover of a free volume: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = runCLI("pull", "db", "--socket", sock); code != 0 || !strings.Contains(out, "no published snapshot") {
		t.Errorf("pull of a never mounted volume: %d\n%s%s", code, out, errOut)
	}
	for _, op := range []string{"takeover", "pull"} {
		var res map[string]any
		code, out, errOut = runCLI(op, "db", "--json", "--socket", sock)
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res["volume"] != "db" || res["message"] == "" || res["seconds"] == nil {
			t.Errorf("%s --json: %d\n%s%s", op, code, out, errOut)
		}
	}
	if code, _, errOut = runCLI("undelete", "db", "--socket", sock); code != exitError || !strings.Contains(errOut, "exists") {
		t.Errorf("undelete of an existing volume: %d %s", code, errOut)
	}
	if code, body := post(t, sock, "VolumeDriver.Remove", `{"Name":"db"}`); code != 200 {
		t.Fatalf("Remove: %d %s", code, body)
	}
	if code, out, errOut = runCLI("undelete", "db", "--socket", sock); code != 0 || !strings.Contains(out, "is back") {
		t.Errorf("undelete: %d\n%s%s", code, out, errOut)
	}
	if code, body := post(t, sock, "VolumeDriver.Get", `{"Name":"db"}`); code != 200 {
		t.Errorf("Get after undelete: %d %s", code, body)
	}

	for _, args := range [][]string{{"takeover"}, {"pull", "a", "b"}, {"undelete"}, {"status", "a", "b"}} {
		if code, _, errOut := runCLI(append(args, "--socket", sock)...); code != exitUsage {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI("status", "--socket", filepath.Join(dir, "none.sock")); code != exitError || !strings.Contains(errOut, "cannot reach portvol") {
		t.Errorf("status without a plugin: %d %s", code, errOut)
	}
}
