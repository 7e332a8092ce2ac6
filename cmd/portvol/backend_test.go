package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServeRejectsBadOwnershipFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"serve", "--socket", filepath.Join(dir, "s.sock"), "--state-dir", filepath.Join(dir, "state")}
	badKey := filepath.Join(dir, "bad.key")
	os.WriteFile(badKey, []byte("short"), 0o600)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--mount-wait", "30s"}, exitUsage, "dockerd gives a plugin call at most 30 s"},
		{[]string{"--mount-wait", "-1s"}, exitUsage, "--mount-wait"},
		{[]string{"--lease-ttl", "0"}, exitUsage, "--lease-ttl"},
		{[]string{"--lease-ttl", "2h"}, exitUsage, "--lease-ttl"},
		{[]string{"--trash-retention", "0"}, exitUsage, "--trash-retention"},
		// A key that cannot be read is a key error (12), with the fix.
		{[]string{"--encryption-key-file", filepath.Join(dir, "missing")}, exitKey, "does not exist: give the path of the key file"},
		{[]string{"--encryption-key-file", badKey}, exitKey, "32 bytes"},
	} {
		code, out, errOut := runCLI(append(append([]string{}, base...), c.args...)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", c.args, code, out+errOut, c.code, c.want)
		}
	}
}

func writeKey(t *testing.T, path, hexKey string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A key that does not fit the store does not stop the plugin from
// answering for the volumes it knows; every call that needs the store says
// what is wrong.
func TestServeWithTheWrongKey(t *testing.T) {
	dir := t.TempDir()
	sock, state := filepath.Join(dir, "pv.sock"), filepath.Join(dir, "state")
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	writeKey(t, keyA, strings.Repeat("ab", 32))
	writeKey(t, keyB, strings.Repeat("cd", 32))
	s := startServe(t, "--socket", sock, "--state-dir", state, "--encryption-key-file", keyA)
	waitListening(t, sock, s)
	if code, body := post(t, sock, "VolumeDriver.Create", `{"Name":"v1"}`); code != 200 {
		t.Fatalf("Create: %d %s", code, body)
	}
	s.cancel()
	<-s.code

	s = startServe(t, "--socket", sock, "--state-dir", state, "--encryption-key-file", keyB)
	waitListening(t, sock, s)
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var code int
		if code, body = post(t, sock, "VolumeDriver.Create", `{"Name":"v2"}`); code != 200 && strings.Contains(body, "does not match") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, "encryption key does not match this store") || !strings.Contains(body, "--encryption-key-file") {
		t.Errorf("Create with the wrong key: %s", body)
	}
	if code, body := post(t, sock, "VolumeDriver.Get", `{"Name":"v1"}`); code != 200 || !strings.Contains(body, "does not match") {
		t.Errorf("Get of a known volume with the wrong key: %d %s", code, body)
	}
	if !strings.Contains(s.out.String(), "cannot use the store") {
		t.Errorf("the log does not say the store cannot be used:\n%s", s.out)
	}
}

// An unreachable store at start: the plugin listens and answers at once.
func TestServeStoreUnreachableAtStart(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "pv.sock")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	s := startServe(t, "--socket", sock, "--state-dir", filepath.Join(dir, "state"),
		"--store", "s3://bucket?endpoint=http://127.0.0.1:1&region=us-east-1")
	waitListening(t, sock, s)
	if code, body := post(t, sock, "VolumeDriver.List", `{}`); code != 200 {
		t.Errorf("List: %d %s", code, body)
	}
	if code, body := post(t, sock, "VolumeDriver.Create", `{"Name":"v"}`); code == 200 || !strings.Contains(body, "store unreachable") {
		t.Errorf("Create: %d %s", code, body)
	}
	if code, body := post(t, sock, "VolumeDriver.Get", `{"Name":"v"}`); code == 200 || strings.Contains(body, "does not exist") {
		t.Errorf("Get of an unknown name: %d %s", code, body)
	}
}
