package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad arguments exit 2 before anything touches a store, and say what is
// wrong.
func TestSnapshotCommandArguments(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(base, "full")
	if err := os.MkdirAll(filepath.Join(full, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	store := "file://" + filepath.Join(base, "store")
	const id = "20260102T150405Z-0123456789abcdef"
	t.Setenv("PORTVOL_STORE", "") // the environment twin must not help

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"import without store", []string{"import", src, "v"}, "--store is required (or set PORTVOL_STORE)"},
		{"import bad store", []string{"import", "--store", "/abs/path", src, "v"}, "use file:///abs/path"},
		{"import store with credentials", []string{"import", "--store", "s3://user:secret@bucket", src, "v"}, "credentials do not belong in the store URL"},
		{"import one argument", []string{"import", "--store", store, src}, "import takes 2 arguments (SRC_DIR VOLUME), got 1"},
		{"import three arguments", []string{"import", "--store", store, src, "v", "w"}, "got 3"},
		{"import bad volume", []string{"import", "--store", store, src, "../etc"}, `invalid volume name "../etc"`},
		{"import option without value", []string{"import", "--store", store, src, "v", "-o", "takeover"}, `-o "takeover": want NAME=VALUE`},
		{"import unknown option", []string{"import", "--store", store, src, "v", "-o", "sise=1G"}, `unknown option "sise"`},
		{"import bad option value", []string{"import", "--store", store, src, "v", "-o", "snapshot_interval=often"}, "invalid value"},
		{"import option twice", []string{"import", "--store", store, src, "v", "-o", "takeover=auto", "-o", "takeover=manual"}, "-o takeover given twice"},
		{"import bad host id", []string{"import", "--store", store, src, "v", "--host-id", "a b"}, "--host-id: invalid host id"},
		{"import missing source", []string{"import", "--store", store, filepath.Join(base, "nope"), "v"}, "is not a directory"},
		{"import source is a file", []string{"import", "--store", store, file, "v"}, "is not a directory"},
		{"init bad block size", []string{"init", "--store", store, "--block-size", "3KiB"}, "want a power of two from 4KiB to 8MiB"},
		{"init huge block size", []string{"init", "--store", store, "--block-size", "16MiB"}, "want a power of two"},
		{"init bad compression", []string{"init", "--store", store, "--compression", "lz4"}, `--compression "lz4": want s2 or zstd`},
		{"init arguments", []string{"init", "--store", store, "v"}, "init takes no arguments"},
		{"init without store", []string{"init"}, "--store is required"},
		{"import unknown flag", []string{"import", "--store", store, "--bogus", src, "v"}, "unknown flag: --bogus"},
		{"export one argument", []string{"export", "--store", store, "v"}, "export takes 2 arguments (VOLUME DST_DIR), got 1"},
		{"export bad snapshot", []string{"export", "--store", store, "v", filepath.Join(base, "d"), "--snapshot", "latest"}, `--snapshot "latest": a snapshot ID looks like`},
		{"export bad previous", []string{"export", "--store", store, "v", filepath.Join(base, "d"), "--previous", "x"}, `--previous "x"`},
		{"export onto a file", []string{"export", "--store", store, "v", file}, "exists and is not a directory"},
		{"export onto a non-empty dir", []string{"export", "--store", store, "v", full}, "is not empty: export would replace its contents"},
		{"snapshots two arguments", []string{"snapshots", "--store", store, "v", "w"}, "snapshots takes 1 arguments (VOLUME), got 2"},
		{"snapshots bad volume", []string{"snapshots", "--store", store, "a/b"}, `invalid volume name "a/b"`},
		{"verify all and snapshot", []string{"verify", "--store", store, "v", "--all", "--snapshot", id}, "give --snapshot ID or --all, not both"},
		{"verify bad snapshot", []string{"verify", "--store", store, "v", "--snapshot", "../x"}, "a snapshot ID looks like"},
		{"verify without store", []string{"verify", "v"}, "--store is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cli(t, c.args...)
			r.fails(t, exitUsage, c.want)
			if r.stdout != "" {
				t.Errorf("stdout on a usage error: %q", r.stdout)
			}
		})
	}
	// Nothing was created by any of them.
	if _, err := os.Stat(filepath.Join(base, "store")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command created the store (%v)", err)
	}
	if entries, _ := os.ReadDir(full); len(entries) != 1 {
		t.Errorf("a refused export changed %s", full)
	}
}

func TestCLIHostID(t *testing.T) {
	for _, c := range []struct {
		hostname string
		err      error
		want     string
		wantErr  string
	}{
		{hostname: "db1", want: "db1-cli"},
		{hostname: "db1.example.com", want: "db1.example.com-cli"},
		{hostname: "bad host", wantErr: "pass --host-id"},
		{hostname: "", wantErr: "pass --host-id"},
		{err: errors.New("uname failed"), wantErr: "cannot tell this host's name"},
	} {
		got, err := cliHostID(func() (string, error) { return c.hostname, c.err })
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("hostname %q: error %v, want one saying %q", c.hostname, err, c.wantErr)
		case c.wantErr == "" && (err != nil || got != c.want):
			t.Errorf("hostname %q: %q, %v; want %q", c.hostname, got, err, c.want)
		}
	}
}

func TestParseVolumeOptions(t *testing.T) {
	got, err := parseVolumeOptions([]string{"snapshot_interval=90s", "takeover= auto"})
	if err != nil || got["snapshot_interval"] != "1m30s" || got["takeover"] != "auto" {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := parseVolumeOptions(nil); got != nil || err != nil {
		t.Errorf("no -o: %v, %v; want nil (an existing volume keeps its options)", got, err)
	}
	if _, err := parseVolumeOptions([]string{"=x"}); err == nil {
		t.Error("-o =x accepted")
	}
}

func TestParseBlockSize(t *testing.T) {
	for in, want := range map[string]int{"": 0, "64KiB": 64 << 10, "256K": 256 << 10, "1MiB": 1 << 20, "8M": 8 << 20, "131072": 128 << 10} {
		if got, err := parseBlockSize(in); err != nil || got != want {
			t.Errorf("parseBlockSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"2KiB", "3MiB", "16MiB", "1GiB", "-1M", "x"} {
		if _, err := parseBlockSize(in); err == nil {
			t.Errorf("parseBlockSize(%q) accepted", in)
		}
	}
}
