package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/localcopy"
)

// instantCopies stands in for btrfs in the driver's tests (no root, no
// pool): directories under their own root (as the pool's are), whose
// instants are copies of the tree taken at Freeze. afterFreeze, if set,
// runs right after an instant was taken: a write racing the snapshot.
type instantCopies struct {
	*localcopy.Dir
	root string

	mu          sync.Mutex
	gen         uint64
	afterFreeze func(live string)
	limits      map[string]int64 // size limits asked for, by volume
}

func newInstantCopies(root string) *instantCopies {
	return &instantCopies{Dir: localcopy.NewDir(root), root: root, limits: map[string]int64{}}
}

func (c *instantCopies) Filesystem() string                 { return localcopy.FilesystemBtrfs }
func (c *instantCopies) Consistency() localcopy.Consistency { return localcopy.ConsistencyPointInTime }
func (c *instantCopies) volDir(name string) string          { return filepath.Join(c.root, "volumes", name) }

func (c *instantCopies) Create(ctx context.Context, name string, o localcopy.CreateOptions) error {
	c.mu.Lock()
	c.limits[name] = o.SizeLimit
	c.mu.Unlock()
	o.SizeLimit = 0
	return c.Dir.Create(ctx, name, o)
}

func (c *instantCopies) RestoreTarget(ctx context.Context, name string, populated bool, o localcopy.CreateOptions) (localcopy.Target, error) {
	c.mu.Lock()
	c.limits[name] = o.SizeLimit
	c.mu.Unlock()
	o.SizeLimit = 0
	return c.Dir.RestoreTarget(ctx, name, populated, o)
}

func (c *instantCopies) Freeze(_ context.Context, name string) (localcopy.Frozen, error) {
	c.mu.Lock()
	c.gen++
	gen, hook := c.gen, c.afterFreeze
	c.mu.Unlock()
	id := fmt.Sprintf("%020d", time.Now().UnixNano())
	p := filepath.Join(c.volDir(name), ".frozen-"+id)
	if err := copyDir(c.Path(name), p); err != nil {
		return localcopy.Frozen{}, err
	}
	if hook != nil {
		hook(c.Path(name))
	}
	return localcopy.Frozen{Volume: name, Path: p, ID: id, Generation: gen}, nil
}

func (c *instantCopies) Release(_ context.Context, f localcopy.Frozen) error {
	return os.RemoveAll(f.Path)
}

func (c *instantCopies) entries(name, prefix string) []string {
	es, _ := os.ReadDir(c.volDir(name))
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func (c *instantCopies) KeepBase(_ context.Context, f localcopy.Frozen) error {
	dst := filepath.Join(c.volDir(f.Volume), ".base-"+f.ID)
	if err := os.Rename(f.Path, dst); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries(f.Volume, ".base-") {
		if e != ".base-"+f.ID {
			os.RemoveAll(filepath.Join(c.volDir(f.Volume), e))
		}
	}
	return os.WriteFile(dst+".gen", fmt.Appendf(nil, "%d", f.Generation), 0o644)
}

func (c *instantCopies) Base(_ context.Context, name string) (localcopy.Frozen, bool, error) {
	for _, e := range c.entries(name, ".base-") {
		if strings.HasSuffix(e, ".gen") {
			continue
		}
		p := filepath.Join(c.volDir(name), e)
		b, err := os.ReadFile(p + ".gen")
		if err != nil {
			continue
		}
		var gen uint64
		fmt.Sscan(string(b), &gen)
		return localcopy.Frozen{Volume: name, Path: p, ID: strings.TrimPrefix(e, ".base-"), Generation: gen}, true, nil
	}
	return localcopy.Frozen{}, false, nil
}

func (c *instantCopies) DropBase(_ context.Context, name string) error {
	for _, e := range c.entries(name, ".base-") {
		os.RemoveAll(filepath.Join(c.volDir(name), e))
	}
	return nil
}

func (c *instantCopies) Remove(ctx context.Context, name string) error {
	for _, p := range []string{".frozen-", ".base-"} {
		for _, e := range c.entries(name, p) {
			os.RemoveAll(filepath.Join(c.volDir(name), e))
		}
	}
	return c.Dir.Remove(ctx, name)
}

// copyDir copies the regular files and directories of src to dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// withInstants makes e's driver keep new copies in an instantCopies of its
// own (under <state>/pool, as the btrfs pool is) and returns it.
func withInstants(e *env) *instantCopies {
	c := newInstantCopies(filepath.Join(e.stateDir, "pool"))
	prev := e.tune
	e.tune = func(d *Driver) {
		if prev != nil {
			prev(d)
		}
		d.copies = c
	}
	return c
}

// A snapshot is read from the instant taken at its start, not from the
// live copy: a write right after the instant is in the live copy and not
// in the snapshot another host restores. The instant of the published
// snapshot is kept as the base of the next one, and nothing else stays.
func TestSnapshotsReadFromInstant(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	a, b := newHost(t, "hostA", store), newHost(t, "hostB", store)
	ca, cb := withInstants(a), withInstants(b)
	a.start(nil)
	b.start(nil)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0", "size": "256M"}})
	if st := a.status("v"); st["filesystem"] != "btrfs" || st["snapshot_consistency"] != "point-in-time" || st["size_limit_bytes"] != float64(256<<20) {
		t.Errorf("status of a volume in instant copies: %v", st)
	}
	if ca.limits["v"] != 256<<20 {
		t.Errorf("Create asked the copies for limit %d, want 256M", ca.limits["v"])
	}
	// The same limit written otherwise is the same volume; another limit
	// is refused, on this host and on others.
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0", "size": "0.25GiB"}})
	for _, e := range []*env{a, b} {
		msg := e.fail("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0", "size": "512M"}})
		if !strings.Contains(msg, "size limit 256M") || !strings.Contains(msg, "cannot be changed") {
			t.Errorf("%s: changing the size limit: %q", e.host, msg)
		}
	}
	ca.afterFreeze = func(live string) {
		os.WriteFile(filepath.Join(live, "f"), []byte("written after the instant"), 0o644)
	}
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("before"), 0o644) })
	ca.afterFreeze = nil
	if got, _ := os.ReadFile(filepath.Join(ca.Path("v"), "f")); string(got) != "written after the instant" {
		t.Fatalf("the racing write did not reach A's live copy: %q", got)
	}
	st := a.status("v")
	head := st["head_snapshot"].(string)
	f, id, ok, err := a.d.Base(context.Background(), "v")
	if err != nil || !ok || id != head {
		t.Errorf("A's base after the final snapshot: %v %q %v %v, want the head %q", f, id, ok, err, head)
	}
	if left := ca.entries("v", ".frozen-"); len(left) != 0 {
		t.Errorf("instants left behind: %v", left)
	}

	mp := b.ok("VolumeDriver.Mount", mountID("v", "b1"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "before" {
		t.Errorf("B restored %q: the snapshot was not read from the instant", got)
	}
	if st := b.status("v"); st["filesystem"] != "btrfs" {
		t.Errorf("B's restored copy is in %v, want the instant copies", st["filesystem"])
	}
	if cb.limits["v"] != 256<<20 {
		t.Errorf("B's restore target has limit %d, want 256M", cb.limits["v"])
	}
	if _, err := os.Stat(filepath.Join(b.stateDir, "volumes", "v", "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("B made a directory copy too: %v", err)
	}
	os.WriteFile(filepath.Join(mp, "g"), []byte("from B"), 0o644)
	b.ok("VolumeDriver.Unmount", mountID("v", "b1"))
	b.released("v")

	// A restores B's snapshot: its copy is replaced, its base dropped.
	a.ok("VolumeDriver.Mount", mountID("v", "a2"))
	if _, _, ok, _ := a.d.Base(context.Background(), "v"); ok {
		t.Errorf("A kept the base of the copy its restore replaced")
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a2"))
	a.released("v")
}

// A volume whose copy is a directory (made before, or by a portvol that
// kept directories) keeps working as one on a host that now makes
// subvolumes, and moves into one by Convert or at its next restore.
func TestDirectoryVolumeMovesIntoSubvolume(t *testing.T) {
	requireRoot(t)
	store := filepath.Join(t.TempDir(), "store")
	a, b := newHost(t, "hostA", store), newHost(t, "hostB", store)
	a.start(nil) // directories
	b.start(nil)
	a.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "0"}})
	a.ok("VolumeDriver.Create", map[string]any{"Name": "w", "Opts": map[string]string{"snapshot_interval": "0"}})
	a.publish("v", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("v1"), 0o644) })
	a.publish("w", "a1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("w1"), 0o644) })

	a.stop()
	ca := withInstants(a)
	a.start(nil)
	if st := a.status("v"); st["filesystem"] != "directory" || st["snapshot_consistency"] != "file-by-file" {
		t.Errorf("a directory volume after the switch: %v", st)
	}
	a.publish("v", "a2", func(mp string) {
		if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "v1" {
			t.Errorf("the directory volume reads %q", got)
		}
	})

	// Convert: refused while mounted, then done.
	a.ok("VolumeDriver.Mount", mountID("w", "a3"))
	if _, err := a.d.Convert(context.Background(), "w"); !errors.Is(err, ErrInUse) {
		t.Errorf("Convert of a mounted volume: %v", err)
	}
	a.ok("VolumeDriver.Unmount", mountID("w", "a3"))
	a.released("w")
	// instantCopies cannot convert: the driver says what to do.
	if _, err := a.d.Convert(context.Background(), "w"); err == nil || !strings.Contains(err.Error(), "--volume-fs btrfs") {
		t.Errorf("Convert without a converter: %v", err)
	}

	// The next restore moves v into the instant copies.
	b.publish("v", "b1", func(mp string) { os.WriteFile(filepath.Join(mp, "f"), []byte("v2"), 0o644) })
	mp := a.ok("VolumeDriver.Mount", mountID("v", "a4"))["Mountpoint"].(string)
	if got, _ := os.ReadFile(filepath.Join(mp, "f")); string(got) != "v2" {
		t.Errorf("after the restore A reads %q", got)
	}
	if st := a.status("v"); st["filesystem"] != "btrfs" || st["snapshot_consistency"] != "point-in-time" {
		t.Errorf("after its restore the volume is in %v (%v)", st["filesystem"], st["snapshot_consistency"])
	}
	if _, err := os.Stat(filepath.Join(a.stateDir, "volumes", "v", "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old directory copy is still there: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(ca.Path("v"), "f")); string(got) != "v2" {
		t.Errorf("the instant copy holds %q", got)
	}
	a.ok("VolumeDriver.Unmount", mountID("v", "a4"))
	a.released("v")
}

// snapObserver records the outcome of every snapshot.
type snapObserver struct {
	nopObserver
	mu   sync.Mutex
	ok   int
	errs []error
}

func (o *snapObserver) SnapshotDone(_ string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errs = append(o.errs, err)
		return
	}
	o.ok++
}

// A directory volume's periodic snapshots are file by file, but complete
// while files vanish and are replaced under them (a database recycling
// its log segments and renaming its checkpoint files): none fails.
func TestDirectorySnapshotsCompleteUnderChurn(t *testing.T) {
	requireRoot(t)
	e := newHost(t, "hostA", filepath.Join(t.TempDir(), "store"))
	obs := &snapObserver{}
	e.tune = func(d *Driver) { d.obs = obs }
	e.start(nil)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v", "Opts": map[string]string{"snapshot_interval": "1s"}})
	mp := e.ok("VolumeDriver.Mount", mountID("v", "a1"))["Mountpoint"].(string)
	if st := e.status("v"); st["snapshot_consistency"] != "file-by-file" {
		t.Errorf("a directory volume's snapshots are %v", st["snapshot_consistency"])
	}
	block := randomBytes(t, 256<<10)
	stop := time.Now().Add(4 * time.Second)
	for i := 0; time.Now().Before(stop) || obs.count() < 2; i++ {
		// Segments come and go; the control file is replaced by rename.
		seg := filepath.Join(mp, fmt.Sprintf("seg-%03d", i%40))
		os.WriteFile(seg, block, 0o600)
		os.Remove(filepath.Join(mp, fmt.Sprintf("seg-%03d", (i+20)%40)))
		os.WriteFile(filepath.Join(mp, "control.tmp"), fmt.Appendf(nil, "control %d", i), 0o600)
		os.Rename(filepath.Join(mp, "control.tmp"), filepath.Join(mp, "control"))
		if time.Now().After(stop.Add(20 * time.Second)) {
			t.Fatalf("no two snapshots in 24 s of churn: %d published, failures %v", obs.count(), obs.errs)
		}
	}
	e.ok("VolumeDriver.Unmount", mountID("v", "a1"))
	e.released("v")
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.errs) > 0 {
		t.Errorf("%d snapshots published, %d failed under churn: %v", obs.ok, len(obs.errs), obs.errs)
	}
}

func (o *snapObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ok
}
