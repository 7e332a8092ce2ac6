package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Build stamps, set by the Makefile with -ldflags -X:
//
//   - version: git describe --tags --always --dirty, the name releases and
//     plugin tags use. A plain go build leaves it empty and the module
//     version from the build info stands in (go install
//     github.com/portvol/portvol/cmd/portvol@v1.2.3 records v1.2.3);
//   - vcsRevision, vcsModified ("true"/"false"): git rev-parse HEAD and
//     whether the checkout had changes, used only where the build info
//     has no vcs.revision (go build records none in a git worktree, whose
//     .git is a file, nor with -buildvcs=false).
//
// They are package-level variables because the linker can only set those.
var version, vcsRevision, vcsModified string

// buildVersion is what a binary knows about the source it was built from.
type buildVersion struct {
	Version  string // the stamp, else the module version, else "(devel)"
	Module   string // module path and version from the build info; "" without build info
	Revision string // VCS commit (go build from a checkout records it); "" if unknown
	Modified bool   // the checkout had uncommitted changes
	Go       string // toolchain and platform
}

// readBuildVersion combines the linker stamps with the build info, which
// wins where it knows the revision: the go command recorded it itself.
func readBuildVersion(stamp, stampRevision, stampModified string, bi *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: stamp, Revision: stampRevision, Modified: stampModified == "true",
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.Main.Path != "" {
			v.Module = strings.TrimSpace(bi.Main.Path + " " + bi.Main.Version)
		}
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			v.Revision, v.Modified = rev, settings["vcs.modified"] == "true"
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

// currentVersion is this binary's buildVersion.
func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return readBuildVersion(version, vcsRevision, vcsModified, bi)
}

// revisionText is the revision as printed: the commit, marked when the
// checkout was modified.
func (v buildVersion) revisionText() string {
	switch {
	case v.Revision == "":
		return "unknown (built without VCS information)"
	case v.Modified:
		return v.Revision + " (modified)"
	}
	return v.Revision
}

// short is the one line of --version and of the serve log.
func (v buildVersion) short() string {
	if v.Revision == "" {
		return v.Version
	}
	rev := v.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if v.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (revision %s)", v.Version, rev)
}

// write prints the report of portvol version.
func (v buildVersion) write(w io.Writer) error {
	module := v.Module
	if module == "" {
		module = "unknown (built without module information)"
	}
	_, err := fmt.Fprintf(w, "portvol %s\nmodule   %s\nrevision %s\ngo       %s\n", v.Version, module, v.revisionText(), v.Go)
	return err
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the portvol version, module version and VCS revision it was built from",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			return currentVersion().write(stdout)
		},
	}
}
