package localcopy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/localcopytest"
)

func TestDirConformance(t *testing.T) {
	localcopytest.Run(t, func(t *testing.T) localcopy.Copies { return localcopy.NewDir(t.TempDir()) })
}

func TestDirRefusesSizeLimit(t *testing.T) {
	d := localcopy.NewDir(t.TempDir())
	ctx := context.Background()
	err := d.Create(ctx, "v", localcopy.CreateOptions{SizeLimit: 1 << 30})
	if !errors.Is(err, localcopy.ErrUnsupported) {
		t.Fatalf("Create with a size limit = %v, want ErrUnsupported", err)
	}
	if ok, _ := d.Exists(ctx, "v"); ok {
		t.Fatalf("a refused Create left a copy behind")
	}
	if d.Consistency() != localcopy.ConsistencyFileByFile || d.Filesystem() != "directory" {
		t.Fatalf("Dir says %s / %s", d.Consistency(), d.Filesystem())
	}
	if _, ok := localcopy.Copies(d).(localcopy.ChangeFinder); ok {
		t.Fatalf("Dir claims to find changes")
	}
}
