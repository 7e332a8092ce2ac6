package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadBuildVersion(t *testing.T) {
	const rev = "14539ff83bbe3d15cd8aee903bdfe73076e3a918"
	fromCheckout := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/portvol/portvol", Version: "v0.0.0-20261206162904-14539ff83bbe+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"},
		},
	}
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/portvol/portvol", Version: "v1.2.3"}}
	noVCS := &debug.BuildInfo{Main: debug.Module{Path: "github.com/portvol/portvol", Version: "(devel)"}}
	cases := []struct {
		name                 string
		stamp, srev, smod    string
		bi                   *debug.BuildInfo
		version, module, rv  string
		modified             bool
		short                string
		revisionTextContains string
	}{
		{"make in a clone: stamp names it, build info has the commit", "v1.2.3-4-g14539ff-dirty", "", "", fromCheckout,
			"v1.2.3-4-g14539ff-dirty", "github.com/portvol/portvol v0.0.0-20261206162904-14539ff83bbe+dirty", rev, true,
			"v1.2.3-4-g14539ff-dirty (revision 14539ff83bbe, modified)", rev + " (modified)"},
		{"make in a worktree: no vcs in build info, stamps stand in", "14539ff", rev, "false", noVCS,
			"14539ff", "github.com/portvol/portvol (devel)", rev, false,
			"14539ff (revision 14539ff83bbe)", rev},
		{"build info wins over a stamped revision", "x", "0000000000000000000000000000000000000000", "false", fromCheckout,
			"x", "github.com/portvol/portvol v0.0.0-20261206162904-14539ff83bbe+dirty", rev, true,
			"x (revision 14539ff83bbe, modified)", rev},
		{"go install @version: module version", "", "", "", installed,
			"v1.2.3", "github.com/portvol/portvol v1.2.3", "", false,
			"v1.2.3", "built without VCS information"},
		{"plain go build outside git", "", "", "", noVCS,
			"(devel)", "github.com/portvol/portvol (devel)", "", false,
			"(devel)", "unknown"},
		{"no build info at all", "", "", "", nil,
			"(devel)", "", "", false, "(devel)", "unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := readBuildVersion(c.stamp, c.srev, c.smod, c.bi)
			if v.Version != c.version || v.Module != c.module || v.Revision != c.rv || v.Modified != c.modified {
				t.Errorf("got %+v, want version %q module %q revision %q modified %v", v, c.version, c.module, c.rv, c.modified)
			}
			if got := v.short(); got != c.short {
				t.Errorf("short() = %q, want %q", got, c.short)
			}
			if got := v.revisionText(); !strings.Contains(got, c.revisionTextContains) {
				t.Errorf("revisionText() = %q, want it to contain %q", got, c.revisionTextContains)
			}
			if !strings.HasPrefix(v.Go, "go") {
				t.Errorf("Go = %q", v.Go)
			}
		})
	}
}

// portvol version and portvol --version print what the build knows; a
// test binary has no stamp and no VCS information, so it is (devel).
func TestVersionCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"version"}, &out, &errOut); code != exitOK {
		t.Fatalf("portvol version: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := currentVersion()
	if len(lines) != 4 || lines[0] != "portvol "+want.Version || !strings.HasPrefix(lines[1], "module ") ||
		!strings.HasPrefix(lines[2], "revision ") || !strings.Contains(lines[3], want.Go) {
		t.Errorf("portvol version printed:\n%s", out.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"--version"}, &out, &errOut); code != exitOK {
		t.Fatalf("portvol --version: exit %d: %s", code, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != "portvol "+want.short() {
		t.Errorf("portvol --version printed %q, want %q", got, "portvol "+want.short())
	}
	if code := run(t.Context(), []string{"version", "extra"}, &out, &errOut); code == exitOK {
		t.Errorf("portvol version extra succeeded")
	}
}
