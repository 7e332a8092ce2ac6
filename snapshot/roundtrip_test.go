package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/s3"
)

// Every test below exercises real files in t.TempDir(); the store is the
// in-memory one (wrapped to count traffic or inject faults) or a real S3
// server.

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      []byte
		buffered bool // as on a filesystem without O_DIRECT
	}{{"plain", nil, false}, {"encrypted", testKey, false}, {"encrypted-buffered", testKey, true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.buffered {
				directWrites = false
				defer func() { directWrites = true }()
			}
			r, _ := newTestRepo(t, tc.key)
			treeRoundTrip(t, r)
		})
	}
}

// TestS3RoundTrip is the round trip through a real S3 server (versitygw
// on 127.0.0.1): ranged GETs, single-PUT packs, conditional manifests.
func TestS3RoundTrip(t *testing.T) {
	srv := s3test.Start(t)
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", testKey}} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := s3.New(context.Background(), s3.Options{
				Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket, Prefix: srv.Prefix(t),
				AccessKey: srv.AccessKey, SecretKey: transfer.Secret(srv.SecretKey),
			})
			if err != nil {
				t.Fatal(err)
			}
			treeRoundTrip(t, openTestRepo(t, st, tc.key))
		})
	}
}

// treeRoundTrip snapshots a tree with every file type and restores it.
func treeRoundTrip(t *testing.T, r *Repo) {
	if os.Geteuid() != 0 {
		t.Log("not root: owners other than the caller's are not exercised")
	}
	ctx := context.Background()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	makeTree(t, src)
	want := scanTree(t, src)
	// The tree really has what the round trip must carry.
	if xattrsSupported(base) && want["small.txt"].Xattrs == "" {
		t.Fatal("test tree lacks xattrs")
	}
	if want["hard1"].LinkTo == "" || want["bin/setuid"].Mode != 0o4755 || want["tmp"].Mode != 0o1777 || want["fifo"].Type != "fifo" {
		t.Fatalf("test tree incomplete: %+v %+v", want["hard1"], want["bin/setuid"])
	}
	if os.Geteuid() == 0 && want["owned"].UID != 1234 {
		t.Fatal("test tree lacks foreign owners")
	}

	m, err := r.Create(ctx, "pg-data", src, CreateOptions{Host: "host-a", Generation: 3})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.Files == 0 || m.Stats.Hardlinks != 2 || m.Stats.Symlinks != 3 {
		t.Errorf("stats: %+v", m.Stats)
	}

	dst := filepath.Join(base, "volumes", "pg-data", "data")
	if err := r.Restore(ctx, "pg-data", m.ID, dst, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	got := scanTree(t, dst)
	compareTrees(t, want, got)

	// Holes stay holes: the 10-block sparse file has ~1.5 blocks of data.
	if b := got["sparse.img"].Blocks * 512; b > 3<<20 {
		t.Errorf("sparse.img occupies %d bytes after restore; holes were filled", b)
	}
	// Nothing else is left beside the target.
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("leftovers beside the target: %v", entries)
	}

	// Load returns the same header.
	l, err := r.Load(ctx, "pg-data", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if l.Host != "host-a" || l.Generation != 3 || l.Parent != "" || !l.Started.Equal(m.Started) {
		t.Errorf("loaded header %+v", l.Info)
	}
	if err := r.Verify(ctx, "pg-data", m.ID); err != nil {
		t.Errorf("verify: %v", err)
	}
}
