package prune_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

var soakDays = flag.Int("prune.soak-days", 30, "simulated days of the retention soak")

// TestRetentionSoak snapshots a volume every 5 minutes for 30 simulated
// days (a fake clock drives the store's timestamps and the snapshot IDs),
// with 1 % of its blocks changing per hour, the default policy applied
// after each publish and prune (margin 1 h) every hour. The store must
// stay within 2× of what the policy implies: the distinct chunks of the
// snapshots it keeps, plus their manifests.
//
// The analytic bound, for V blocks changing at r blocks per hour under
// "last 24, daily 7": the 24 newest snapshots span at most 24 changes
// (one changed block per published snapshot here), the 7 daily ones 7 days
// of r×24 changes each, so kept data ≤ (V + 24 + 7×24×r) blocks.
func TestRetentionSoak(t *testing.T) {
	t.Parallel()
	const (
		blocks   = 100 // V: 64 KiB blocks, in files of fileSize blocks
		fileSize = 4
		interval = 5 * time.Minute
		perHour  = 1 // r: 1 % of V blocks per hour
	)
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(time.Now().Add(48 * time.Hour).Truncate(24 * time.Hour).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	mem := memstore.NewWithClock(now)
	if err := snapshot.Init(ctx, mem, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	repo, err := snapshot.Open(ctx, mem, snapshot.Options{Fossils: prune.Fossils(mem), Now: now, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := lease.New(mem, lease.Options{Host: "soak", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lm.Acquire(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for f := range blocks / fileSize {
		writeBlocks(t, rng, filepath.Join(dir, fmt.Sprintf("f%03d", f)), fileSize, fileSize*4)
	}
	steps := *soakDays * 24 * int(time.Hour/interval)
	every := int(time.Hour/interval) / perHour
	published, unchanged := 0, 0
	var peak int64
	for i := range steps {
		clock.Add(int64(interval))
		if i%every == 0 {
			writeBlocks(t, rng, filepath.Join(dir, fmt.Sprintf("f%03d", rng.IntN(blocks/fileSize))), fileSize, 1)
		}
		m, err := repo.Create(ctx, "db", dir, snapshot.CreateOptions{Parent: l.Head(), Host: "soak", Generation: l.Generation(), SkipUnchanged: true})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if m.Unchanged {
			unchanged++
		} else {
			if err := l.Publish(ctx, m.ID); err != nil {
				t.Fatal(err)
			}
			published++
			if _, err := prune.Forget(ctx, repo, mem, "db", prune.DefaultPolicy, prune.ForgetOptions{Head: m.ID}); err != nil {
				t.Fatal(err)
			}
		}
		if (i+1)%int(time.Hour/interval) == 0 {
			if _, err := prune.Run(ctx, repo, mem, prune.Options{Margin: time.Hour, Now: now}); err != nil {
				t.Fatal(err)
			}
			peak = max(peak, storeBytes(t, mem))
		}
	}
	infos, err := repo.List(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	// What the policy implies: the distinct chunks of the kept snapshots.
	var implied int64
	seen := map[snapshot.ID]bool{}
	for _, in := range infos {
		m, err := repo.Load(ctx, "db", in.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range m.Chunks {
			if !seen[c.ID] {
				seen[c.ID] = true
				implied += int64(c.Length)
			}
		}
		oi, err := mem.Stat(ctx, snapshot.ManifestKey("db", in.ID))
		if err != nil {
			t.Fatal(err)
		}
		implied += oi.Size
	}
	analytic := int64(blocks+24+7*24*perHour) * blockSize
	final := storeBytes(t, mem)
	t.Logf("%d days: %d snapshots published, %d intervals unchanged (nothing published), %d kept",
		*soakDays, published, unchanged, len(infos))
	t.Logf("store %.1f MiB (peak after a prune %.1f MiB); policy implies %.1f MiB (kept chunks + manifests), analytic bound %.1f MiB; ratio %.2f",
		mib(final), mib(peak), mib(implied), mib(analytic), float64(final)/float64(implied))
	if want := int64(*soakDays)*24*perHour + 1; int64(published) > want {
		t.Errorf("%d snapshots published for %d changes: identical snapshots were published", published, want)
	}
	if implied > analytic {
		t.Errorf("kept data %.1f MiB exceeds the analytic bound %.1f MiB: retention keeps more than the policy says", mib(implied), mib(analytic))
	}
	if final > 2*implied || peak > 2*analytic {
		t.Errorf("store holds %.1f MiB (peak %.1f MiB), more than 2× what the policy implies (%.1f MiB; analytic %.1f MiB)",
			mib(final), mib(peak), mib(implied), mib(analytic))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func storeBytes(t *testing.T, s transfer.ObjectStore) int64 {
	var n int64
	if err := s.List(context.Background(), "", func(oi transfer.ObjectInfo) error {
		n += oi.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
