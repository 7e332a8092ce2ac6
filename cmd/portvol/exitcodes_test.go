package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every usage error exits 2, whatever part of the command line is wrong,
// and says what to do; a store URL where nothing is exits 10.
func TestUsageAndStoreExitCodes(t *testing.T) {
	missing := "file://" + filepath.Join(t.TempDir(), "typo")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"; see portvol --help`},
		{[]string{"volumse"}, exitUsage, `did you mean volumes?`},
		{[]string{"status", "--nope"}, exitUsage, "unknown flag: --nope"},
		{[]string{"serve", "extra"}, exitUsage, "serve takes 0 arguments"},
		{[]string{"version", "extra"}, exitUsage, "version takes 0 arguments"},
		{[]string{"volumes", "extra", "--store", missing}, exitUsage, "volumes takes 0 arguments"},
		{[]string{"volumes"}, exitUsage, "--store is required"},
		{[]string{"volumes", "--store", "ftp://x"}, exitUsage, `unknown scheme "ftp"`},
		{[]string{"snapshots", "../x", "--store", missing}, exitUsage, `invalid volume name "../x"`},
		{[]string{"volumes", "--store", missing}, exitNoStore, "the store is missing or empty: check --store"},
		{[]string{"export", "v", t.TempDir() + "/d", "--store", missing}, exitNoStore, "the store is missing or empty: check --store"},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("portvol %s: exit %d, stderr %q (stdout %q); want exit %d saying %q",
				strings.Join(c.args, " "), code, errOut, out, c.code, c.want)
		}
	}
	if code, out, _ := runCLI(); code != exitOK || !strings.Contains(out, "Available Commands") {
		t.Errorf("portvol without arguments: exit %d, want the help:\n%s", code, out)
	}
	// An empty directory is no store either.
	empty := t.TempDir()
	code, _, errOut := runCLI("volumes", "--store", "file://"+empty)
	if code != exitNoStore || !strings.Contains(errOut, "holds no portvol store") {
		t.Errorf("volumes of an empty directory: exit %d, %q; want 10", code, errOut)
	}
}
