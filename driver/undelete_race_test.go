package driver

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/transfer"
)

var undeleteRaceSeeds = flag.Int("undelete-race-seeds", 12, "seeded interleavings of TestUndeleteRacingCreate")

// jitterStore delays every store call by a seeded random 0–3 ms while on,
// so that two hosts' calls interleave differently for every seed.
type jitterStore struct {
	transfer.ObjectStore
	on  atomic.Bool
	mu  sync.Mutex
	rng *rand.Rand
}

func (j *jitterStore) pause(ctx context.Context) {
	if !j.on.Load() {
		return
	}
	j.mu.Lock()
	d := time.Duration(j.rng.IntN(3000)) * time.Microsecond
	j.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (j *jitterStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	j.pause(ctx)
	return j.ObjectStore.Put(ctx, key, r, size)
}
func (j *jitterStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	j.pause(ctx)
	return j.ObjectStore.Get(ctx, key, off, n)
}
func (j *jitterStore) Stat(ctx context.Context, key string) (transfer.ObjectInfo, error) {
	j.pause(ctx)
	return j.ObjectStore.Stat(ctx, key)
}
func (j *jitterStore) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	j.pause(ctx)
	return j.ObjectStore.List(ctx, prefix, fn)
}
func (j *jitterStore) Delete(ctx context.Context, key string) error {
	j.pause(ctx)
	return j.ObjectStore.Delete(ctx, key)
}
func (j *jitterStore) Load(ctx context.Context, key string, limit int64) ([]byte, string, error) {
	j.pause(ctx)
	return j.ObjectStore.Load(ctx, key, limit)
}
func (j *jitterStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	j.pause(ctx)
	return j.ObjectStore.PutIfAbsent(ctx, key, data)
}
func (j *jitterStore) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	j.pause(ctx)
	return j.ObjectStore.PutIfMatch(ctx, key, data, etag)
}

// An undelete on one host racing a Create of the same name on another
// never gives the new volume the removed volume's data: whichever wins,
// the name holds either the undeleted volume with its data or a new,
// empty one. Each seed delays the two hosts' store calls differently
// (-undelete-race-seeds=N for more); a failure prints its seed.
func TestUndeleteRacingCreate(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	var js [2]*jitterStore
	var es [2]*env
	for i, host := range []string{"hostA", "hostB"} {
		j := &jitterStore{rng: rand.New(rand.NewPCG(1, uint64(i)))}
		e := newHost(t, host, store)
		e.wrap = func(st transfer.ObjectStore) transfer.ObjectStore { j.ObjectStore = st; return j }
		e.start(nil)
		js[i], es[i] = j, e
	}
	a, b := es[0], es[1]
	newOpts := map[string]string{OptSnapshotInterval: "1h"}
	newNorm, err := ParseOptions(newOpts)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for seed := range uint64(*undeleteRaceSeeds) {
		name := fmt.Sprintf("v%d", seed)
		a.ok("VolumeDriver.Create", map[string]any{"Name": name})
		a.publish(name, "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "old"), []byte("removed data"), 0o644) })
		a.ok("VolumeDriver.Remove", map[string]string{"Name": name})

		for i, j := range js {
			j.mu.Lock()
			j.rng = rand.New(rand.NewPCG(seed, uint64(i)))
			j.mu.Unlock()
			j.on.Store(true)
		}
		var wg sync.WaitGroup
		var undelErr error
		var createStatus int
		var createOut map[string]any
		wg.Add(2)
		go func() {
			defer wg.Done()
			// portvol undelete, through the plugin's socket.
			status, out, err := a.call(context.Background(), AdminUndelete[1:], AdminRequest{Volume: name})
			switch {
			case err != nil:
				undelErr = err
			case status != 200 || out["Err"] != nil:
				undelErr = fmt.Errorf("%d %v", status, out["Err"])
			}
		}()
		startB := time.Duration(rand.New(rand.NewPCG(seed, 7)).IntN(12)) * time.Millisecond
		go func() {
			defer wg.Done()
			time.Sleep(startB) // undelete gets a head start of 0–12 ms
			createStatus, createOut, _ = b.call(context.Background(), "VolumeDriver.Create", map[string]any{"Name": name, "Opts": newOpts})
		}()
		wg.Wait()
		for _, j := range js {
			j.on.Store(false)
		}
		created := createStatus == 200 && createOut["Err"] == nil

		bk := b.d.backend.Load()
		v, verr := catalog.Get(context.Background(), bk.Store, name)
		o, herr := bk.Leases.Inspect(context.Background(), name)
		if herr != nil {
			t.Fatalf("seed %d: %v", seed, herr)
		}
		var outcome string
		switch {
		case verr != nil:
			outcome = "neither"
			if undelErr == nil || created {
				t.Errorf("seed %d: no volume record (%v), yet undelete said %v and Create %d %v", seed, verr, undelErr, createStatus, createOut)
			}
			continue
		case v.Options[OptSnapshotInterval] == newNorm[OptSnapshotInterval]:
			outcome = "new volume"
			if o.Record.Head != "" {
				t.Errorf("seed %d: the new volume's head record names snapshot %s (the removed volume's) — undelete: %v", seed, o.Record.Head, undelErr)
			}
		default:
			outcome = "undeleted"
			if undelErr != nil {
				t.Errorf("seed %d: the old record is back, but undelete failed: %v", seed, undelErr)
			}
		}
		outcomes[outcome]++
		// What a container sees.
		mp, ok := "", false
		if status, out, _ := b.call(context.Background(), "VolumeDriver.Mount", mountID(name, "b1")); status == 200 {
			mp, ok = out["Mountpoint"].(string)
		}
		if !ok {
			t.Errorf("seed %d (%s): mount on B failed", seed, outcome)
			continue
		}
		got, _ := os.ReadFile(filepath.Join(mp, "old"))
		if outcome == "new volume" && len(got) != 0 || outcome == "undeleted" && string(got) != "removed data" {
			t.Errorf("seed %d: %s reads %q", seed, outcome, got)
		}
		b.ok("VolumeDriver.Unmount", mountID(name, "b1"))
		b.released(name)
	}
	t.Logf("outcomes over %d seeds: %v", *undeleteRaceSeeds, outcomes)
}
