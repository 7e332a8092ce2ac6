package prune_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/prune"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

var (
	simSteps = flag.Int("prune.steps", 1200, "steps per randomized prune run")
	simRuns  = flag.Int("prune.runs", 2, "randomized prune runs")
	simSeed  = flag.Uint64("prune.seed", 0, "seed of the first randomized run (0: from the clock)")
)

// TestRandomizedPrune runs hosts publishing snapshots of changing volumes
// (the real snapshot engine and lease package), imports killed midway,
// forced takeovers that leave fenced writers uploading, and forgets and
// prunes running at once from two places, every process killable at any
// store operation and every answer possibly late or lost. Afterwards every
// listed snapshot verifies, every forgotten one is gone, each head exists,
// and a quiet double prune with margin 0 leaves nothing unreferenced.
func TestRandomizedPrune(t *testing.T) {
	t.Parallel()
	base := *simSeed
	if base == 0 {
		base = uint64(time.Now().UnixNano())
	}
	for run := range *simRuns {
		seed := base + uint64(run)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("reproduce with: go test ./prune -run 'TestRandomizedPrune' -prune.runs 1 -prune.seed %d -prune.steps %d", seed, *simSteps)
				}
			}()
			simulate(t, seed, *simSteps)
		})
	}
}

const (
	simHosts   = 3
	simVolumes = 3
	simMargin  = 200 * time.Millisecond
	simWindow  = 5 * time.Millisecond
	blockSize  = 64 << 10
)

type sim struct {
	t      *testing.T
	seed   uint64
	mem    *memstore.Store
	faults *faultStore
	steps  atomic.Int64

	mu        sync.Mutex
	forgotten map[string]bool // volume/id
	stats     map[string]int
}

func (s *sim) count(what string) {
	s.mu.Lock()
	s.stats[what]++
	s.mu.Unlock()
}

func vol(i int) string { return fmt.Sprintf("v%d", i) }

func simulate(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	s := &sim{t: t, seed: seed, mem: memstore.New(), forgotten: map[string]bool{}, stats: map[string]int{}}
	s.faults = &faultStore{ObjectStore: s.mem, rng: rand.New(rand.NewPCG(seed, 1)), fail: 0.005}
	if err := snapshot.Init(ctx, s.mem, snapshot.InitOptions{BlockSize: blockSize}); err != nil {
		t.Fatal(err)
	}
	s.steps.Store(int64(steps))
	var wg sync.WaitGroup
	for h := range simHosts {
		wg.Add(1)
		go func() { defer wg.Done(); s.host(ctx, h) }()
	}
	for p := range 2 {
		wg.Add(2)
		go func() { defer wg.Done(); s.pruner(ctx, p) }()
		go func() { defer wg.Done(); s.forgetter(ctx, p) }()
	}
	wg.Wait()
	t.Logf("seed %d: %v", seed, s.stats)
	s.check(ctx)
}

// process returns a store view and context for one process that is
// killed at a random store operation with probability pKill.
func (s *sim) process(ctx context.Context, rng *rand.Rand, pKill float64) (transfer.ObjectStore, context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancel(ctx)
	if rng.Float64() >= pKill {
		return s.faults, pctx, cancel
	}
	return newKillStore(s.faults, 1+rng.IntN(40), rng.IntN(2) == 0, cancel), pctx, cancel
}

func (s *sim) repo(ctx context.Context, store transfer.ObjectStore) (*snapshot.Repo, error) {
	return snapshot.Open(ctx, store, snapshot.Options{
		Workers: 1, Transfers: 2, Fossils: prune.Fossils(store), GuardWindow: simWindow,
	})
}

func (s *sim) take() bool { return s.steps.Add(-1) >= 0 }

// host publishes snapshots of the volumes it holds, each from its own
// copy of the data (what matters here is the store, not the bytes).
func (s *sim) host(ctx context.Context, h int) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(100+h)))
	id := fmt.Sprintf("host%d", h)
	lm, err := lease.New(s.faults, lease.Options{Host: id, TTL: time.Second})
	if err != nil {
		s.t.Error(err)
		return
	}
	dirs := make([]string, simVolumes)
	for v := range dirs {
		dirs[v] = filepath.Join(s.t.TempDir(), vol(v))
		if err := os.MkdirAll(dirs[v], 0o755); err != nil {
			s.t.Error(err)
			return
		}
		for f := range 3 {
			writeBlocks(s.t, rng, filepath.Join(dirs[v], fmt.Sprintf("f%d", f)), 4, 4)
		}
	}
	held := map[int]*lease.Lease{}
	retry := -1 // a volume whose last attempt failed: retried unchanged, after a margin or so
	for s.take() {
		v := rng.IntN(simVolumes)
		if retry >= 0 {
			v = retry
		}
		l := held[v]
		if l == nil {
			var err error
			if rng.IntN(6) == 0 {
				l, err = lm.Takeover(ctx, vol(v), lease.TakeoverOptions{Force: true})
				s.count("takeover")
			} else {
				l, err = lm.Acquire(ctx, vol(v))
			}
			if err != nil {
				continue
			}
			held[v] = l
		}
		// Change a few blocks, snapshot, publish, apply retention. A
		// retry changes nothing, so it reuses the packs the failed
		// attempt left — which a prune may have marked meanwhile.
		if retry < 0 {
			writeBlocks(s.t, rng, filepath.Join(dirs[v], fmt.Sprintf("f%d", rng.IntN(3))), 4, 1+rng.IntN(2))
		}
		retry = -1
		store, pctx, cancel := s.process(ctx, rng, 0.25)
		err := s.publish(pctx, store, l, dirs[v], id)
		cancel()
		if err != nil && !errors.Is(err, lease.ErrFenced) {
			retry = v
			time.Sleep(simMargin + time.Duration(rng.Int64N(int64(simMargin))))
		}
		switch {
		case err == nil:
			s.count("published")
		case errors.Is(err, lease.ErrFenced):
			s.count("fenced")
			delete(held, v)
		case errors.Is(err, snapshot.ErrCollected):
			s.count("collected")
		default:
			s.count("failed")
		}
		if rng.IntN(5) == 0 {
			if l.Release(ctx) == nil {
				delete(held, v)
			}
		}
	}
	for _, l := range held {
		_ = l.Release(ctx) // the final check reads heads, not leases
	}
}

func (s *sim) publish(ctx context.Context, store transfer.ObjectStore, l *lease.Lease, dir, host string) error {
	repo, err := s.repo(ctx, store)
	if err != nil {
		return err
	}
	m, err := repo.Create(ctx, l.Volume(), dir, snapshot.CreateOptions{Parent: l.Head(), Host: host, Generation: l.Generation()})
	if err != nil {
		return err
	}
	if err := l.Publish(ctx, m.ID); err != nil {
		return err
	}
	p := prune.Policy{Last: 1 + rng32(m.ID)%4}
	_, err = prune.Forget(ctx, repo, store, l.Volume(), p, prune.ForgetOptions{Head: m.ID})
	return err
}

// rng32 derives a small number from an ID, so the policy varies.
func rng32(id string) int { return int(id[len(id)-1]) }

// forgetter is `portvol forget` run from anywhere with random policies.
func (s *sim) forgetter(ctx context.Context, p int) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(200+p)))
	for s.take() {
		v := vol(rng.IntN(simVolumes))
		store, pctx, cancel := s.process(ctx, rng, 0.2)
		repo, err := s.repo(pctx, store)
		if err == nil {
			policy := prune.Policy{Last: rng.IntN(3), Hourly: rng.IntN(2)}
			var res prune.ForgetResult
			res, err = prune.Forget(pctx, repo, store, v, policy, prune.ForgetOptions{})
			if err == nil {
				s.mu.Lock()
				for _, d := range res.Decisions {
					if !d.Keep {
						s.forgotten[v+"/"+d.ID] = true
					}
				}
				s.mu.Unlock()
				s.count("forget")
			}
		}
		cancel()
		time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond)
	}
}

// pruner is `portvol prune`, or a plugin's maintenance, from two places.
func (s *sim) pruner(ctx context.Context, p int) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(300+p)))
	for s.take() {
		store, pctx, cancel := s.process(ctx, rng, 0.3)
		repo, err := s.repo(pctx, store)
		if err == nil {
			var res prune.Result
			res, err = prune.Run(pctx, repo, store, prune.Options{Margin: simMargin, Host: fmt.Sprintf("pruner%d", p)})
			if err == nil {
				s.count("prune")
				if res.Deleted > 0 {
					s.count("prune-deleted")
				}
			}
		}
		cancel()
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
	}
}

// check is the observer: what a user would see after the run.
func (s *sim) check(ctx context.Context) {
	t := s.t
	repo, err := snapshot.Open(ctx, s.mem, snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	verifyAll := func(when string) map[string]bool {
		listed := map[string]bool{}
		for v := range simVolumes {
			infos, err := repo.List(ctx, vol(v))
			if err != nil {
				t.Fatalf("%s: list %s: %v", when, vol(v), err)
			}
			for _, in := range infos {
				listed[vol(v)+"/"+in.ID] = true
				if err := repo.Verify(ctx, vol(v), in.ID); err != nil {
					t.Errorf("%s: listed snapshot %s/%s does not verify: %v", when, vol(v), in.ID, err)
				}
			}
			data, _, err := s.mem.Load(ctx, lease.HeadKey(vol(v)), 64<<10)
			if err != nil {
				continue
			}
			rec, err := lease.Decode(data)
			if err != nil {
				t.Fatalf("%s: head of %s: %v", when, vol(v), err)
			}
			if rec.Head != "" && !listed[vol(v)+"/"+rec.Head] {
				t.Errorf("%s: head %s of %s is not listed (forgotten or never written)", when, rec.Head, vol(v))
			}
		}
		for k := range s.forgotten {
			if listed[k] {
				t.Errorf("%s: forgotten snapshot %s is still listed", when, k)
			}
		}
		return listed
	}
	listed := verifyAll("after the run")
	for i := range 2 {
		res, err := prune.Run(ctx, repo, s.mem, prune.Options{ZeroMargin: true})
		if err != nil {
			t.Fatalf("quiet prune %d: %v", i+1, err)
		}
		t.Logf("quiet prune %d: %+v", i+1, res)
	}
	after := verifyAll("after the quiet double prune")
	if len(after) != len(listed) {
		t.Errorf("the quiet prune changed the snapshot list: %d listed before, %d after", len(listed), len(after))
	}
	assertNothingUnreferenced(t, ctx, repo, s.mem)
}

// assertNothingUnreferenced checks that every pack is referenced by a
// listed snapshot, every pack index names an existing pack under a live
// snapshot (or a first snapshot's) prefix, and no collection is pending.
func assertNothingUnreferenced(t *testing.T, ctx context.Context, repo *snapshot.Repo, store transfer.ObjectStore) {
	t.Helper()
	refs := map[string]bool{}
	err := snapshot.Objects(ctx, store, snapshot.KindManifest, func(o snapshot.Object) error {
		return repo.References(ctx, o.Volume, o.Snapshot, func(r snapshot.Reference) error {
			refs[r.Key] = true
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	packs := map[string]bool{}
	if err := snapshot.Objects(ctx, store, snapshot.KindPack, func(o snapshot.Object) error {
		packs[o.Pack] = true
		if !refs[o.Pack] {
			t.Errorf("pack %s (%d bytes) is referenced by no snapshot after a quiet double prune", o.Pack, o.Size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Objects(ctx, store, snapshot.KindIndex, func(o snapshot.Object) error {
		if !packs[o.Pack] {
			t.Errorf("pack index %s names a pack that is gone", o.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := store.List(ctx, "prune/collections/", func(oi transfer.ObjectInfo) error {
		t.Errorf("collection record %s is still pending", oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// writeBlocks writes n random blocks of a file of size blocks, creating
// it if needed.
func writeBlocks(t *testing.T, rng *rand.Rand, path string, size, n int) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	for range n {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.WriteAt(buf, int64(rng.IntN(size))*blockSize); err != nil {
			t.Error(err)
		}
	}
	if fi, err := f.Stat(); err == nil && fi.Size() < int64(size)*blockSize {
		if err := f.Truncate(int64(size) * blockSize); err != nil {
			t.Error(err)
		}
	}
}
