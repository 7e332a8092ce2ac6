package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"path"
	"strings"
	"testing"
)

const module = "github.com/portvol/portvol"

// rules maps a package (relative to the module; "x/..." covers x's
// subpackages) to what it may import beyond the standard library: module
// packages (relative) and third-party prefixes. The most specific rule wins.
var rules = map[string][]string{
	"transfer":              {},
	"transfer/...":          {"transfer"},
	"transfer/localdir":     {"transfer", "internal/durable"},
	"transfer/s3":           {"transfer", "github.com/minio/minio-go/v7"},
	"transfer/transfertest": {"transfer", "golang.org/x/sync"},
	"snapshot":              {"transfer", "internal/volname", "internal/durable", "github.com/klauspost/compress", "github.com/zeebo/blake3", "golang.org/x/sync", "golang.org/x/sys"},
	"metadata":              {"go.etcd.io/bbolt"},
	"lease":                 {"transfer", "internal/volname"},
	"lease/leasetest":       {"lease", "transfer", "transfer/faultstore"},
	"catalog":               {"transfer", "internal/volname"},
	"prune":                 {"snapshot", "lease", "catalog", "transfer"},
	"writer":                {"snapshot", "lease", "transfer", "internal/durable", "golang.org/x/sys"},
	// The driver sees the local copy through localcopy's one interface
	// (DESIGN.md §7), whichever filesystem is behind it.
	"driver": {"metadata", "snapshot", "transfer", "lease", "catalog", "prune", "writer", "localcopy", "internal/volname", "internal/durable",
		"github.com/sirupsen/logrus", "github.com/dustin/go-humanize", "github.com/moby/sys/mountinfo", "golang.org/x/sys"},
	"cmd/...":     {"*"},
	"integration": {},
	// The restic comparison keeps its pg-btrfs data directory in a
	// subvolume of a pool image, as bench/pages does.
	"bench": {"github.com/minio/minio-go/v7", "golang.org/x/sys", "localcopy", "localcopy/btrfs"},
	// The format study measures codecs; the pages bench drives the engine.
	"bench/formatstudy": {"github.com/klauspost/compress", "github.com/pierrec/lz4/v4", "github.com/zeebo/blake3", "golang.org/x/sys"},
	"bench/pages":       {"snapshot", "transfer", "transfer/localdir", "localcopy", "localcopy/btrfs", "golang.org/x/sys"},
	// The handoff profiler drives the engine on a btrfs pool against a file:// or S3 store.
	"bench/handoffprof": {"snapshot", "transfer", "transfer/localdir", "transfer/s3", "localcopy", "localcopy/btrfs"},
	"hosttest":          {},
	"internal/s3test":   {},
	"internal/needs":    {}, // tests' prerequisites (skip, or fail under CI=true)
	"internal/archtest": {},
	"localcopy":         {"internal/volname", "internal/durable", "golang.org/x/sys"},
	// btrfs's change discovery is a snapshot.ChangeSource.
	"localcopy/btrfs":         {"localcopy", "snapshot", "golang.org/x/sys"},
	"localcopy/localcopytest": {"localcopy"},
	"bench/volfs":             {"localcopy", "localcopy/btrfs"},
	// Leaf helpers every package may import: the standard library only.
	"internal/volname": {},
	"internal/durable": {},
	"internal/metrics": {"transfer/meter", "github.com/prometheus/client_golang"},
}

func ruleFor(pkg string) ([]string, bool) {
	if r, ok := rules[pkg]; ok {
		return r, true
	}
	for p := pkg; p != "." && p != ""; p = path.Dir(p) {
		if r, ok := rules[p+"/..."]; ok {
			return r, true
		}
	}
	return nil, false
}

func allowed(imp string, rule []string) bool {
	for _, a := range rule {
		switch {
		case a == "*":
			return true
		case strings.Contains(a, "."): // third party
			if imp == a || strings.HasPrefix(imp, a+"/") {
				return true
			}
		case imp == module+"/"+a:
			return true
		}
	}
	return false
}

func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

func TestImportRules(t *testing.T) {
	// Only the packages' own (non-test) imports are checked: tests may
	// use real stores and helpers from anywhere in the module.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \",\"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		pkgPath, imports, _ := strings.Cut(sc.Text(), " ")
		rel := strings.TrimPrefix(strings.TrimPrefix(pkgPath, module), "/")
		rule, ok := ruleFor(rel)
		if !ok {
			t.Errorf("package %s has no import rule: add it to rules (DESIGN.md §1 says who may import what)", rel)
			continue
		}
		n++
		for _, imp := range strings.Split(imports, ",") {
			if imp == "" || isStd(imp) || allowed(imp, rule) {
				continue
			}
			t.Errorf("%s imports %s, which DESIGN.md §1 does not allow (allowed beyond the standard library: %v)", rel, imp, rule)
		}
	}
	if n < 10 {
		t.Fatalf("checked only %d packages: go list output was not understood", n)
	}
}
