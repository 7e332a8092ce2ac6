// Command pages is `make bench-pages`: what a small scattered change
// costs portvol's snapshot engine on database-like volumes. It makes
// volumes of 1 GiB and 4 GiB of "half-empty pages" (256 MiB files of
// 8 KiB pages, 4 KiB random and 4 KiB zero), snapshots one into a file://
// store, writes the same 16 MiB of scattered 8 KiB pages (2048 pages)
// into each, and measures, with the page cache dropped before every step:
// the snapshot of the change (with a ChangeSource that knows the written
// ranges, as btrfs extent generations will, and without one), the bytes
// it read and uploaded, the pre-staged restore (in place onto a copy of
// the previous snapshot, and through a staging tree as today's export
// --force does), and a cold restore against dd + sync of the same bytes
// on the same disk. With -btrfs (on when the kernel has btrfs) every size
// is measured again on a btrfs pool the way the driver keeps volumes,
// with the real ChangeSource (localcopy/btrfs) instead of one that knows
// the written ranges. It writes a markdown table into docs/benchmarks.md
// between <!-- bench:pages --> and <!-- /bench:pages -->.
//
// It uses the snapshot package in-process (no S3 server, no CLI; only the
// btrfs row for export --force builds and runs the portvol command, so run
// it from the repository's root), runs as root (it drops the page cache)
// and writes only under -work.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"golang.org/x/sys/unix"
)

const (
	fileSize   = 256 << 20
	pageSize   = 8192
	changePage = 2048 // 16 MiB
)

func main() {
	work := flag.String("work", "bench/work/pages", "scratch directory on the disk to measure")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write the table into")
	sizes := flag.String("gib", "1,4", "volume sizes in GiB")
	runs := flag.Int("runs", 3, "runs per size; the table shows medians")
	flag.StringVar(&btrfsMode, "btrfs", "auto", "also measure on a btrfs pool with the real ChangeSource: auto (when the kernel has btrfs), on or off")
	flag.StringVar(&lockFile, "lock", "", "flock this file around the btrfs runs (loop devices and mounts; the team's /tmp/portvol-docker.lock)")
	flag.BoolVar(&onlyBtrfs, "only-btrfs", false, "measure only on btrfs, without dd + sync (for profiling; -out \"\" then)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write CPU profiles of the btrfs snapshot of the change and pre-staged restore into this directory, and print their phases")
	flag.Parse()
	if err := run(*work, *out, *sizes, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "pages:", err)
		os.Exit(1)
	}
}

// result is one run's figures for one volume size.
type result struct {
	gib               int
	snapSrc, snapStat time.Duration
	readSrc, readStat uint64
	upSrc, upStat     uint64
	inPlace, staged   time.Duration
	fetchedInPlace    uint64
	cold, dd          time.Duration
	initial           time.Duration
	initialUp         uint64
	unchanged         time.Duration
	unchangedUp       uint64
	unchangedFlag     bool
	b                 *btrfsResult // nil without btrfs
}

func run(work, out, sizes string, runs int) error {
	ctx := context.Background()
	work, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	load0 := loadAverage()
	start := time.Now()
	var all []result
	for _, s := range strings.Split(sizes, ",") {
		var gib int
		if _, err := fmt.Sscan(s, &gib); err != nil || gib <= 0 {
			return fmt.Errorf("bad size %q", s)
		}
		for i := 1; i <= runs; i++ {
			r := result{gib: gib}
			if !onlyBtrfs {
				if r, err = runOne(ctx, work, gib, uint64(i)); err != nil {
					return fmt.Errorf("%d GiB, run %d: %w", gib, i, err)
				}
			}
			if useBtrfs() {
				if r.b, err = runBtrfs(ctx, work, gib, uint64(i)); err != nil {
					return fmt.Errorf("%d GiB on btrfs, run %d: %w", gib, i, err)
				}
				fmt.Printf("%d GiB run %d on btrfs: %+v\n", gib, i, *r.b)
			}
			fmt.Printf("%d GiB run %d: %+v\n", gib, i, r)
			all = append(all, r)
		}
	}
	if out == "" {
		fmt.Printf("load average %s at the start, %s at the end\n", load0, loadAverage())
		return nil
	}
	return writeReport(out, all, load0, loadAverage(), time.Since(start))
}

// counting wraps a store to count bytes in and out.
type counting struct {
	transfer.ObjectStore
	put, get atomic.Uint64
}

func (c *counting) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := c.ObjectStore.Put(ctx, key, r, size)
	if err == nil {
		c.put.Add(uint64(size))
	}
	return err
}

func (c *counting) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	e, err := c.ObjectStore.PutIfAbsent(ctx, key, data)
	if err == nil {
		c.put.Add(uint64(len(data)))
	}
	return e, err
}

type countReader struct {
	io.ReadCloser
	n *atomic.Uint64
}

func (r countReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(uint64(n))
	return n, err
}

func (c *counting) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.ObjectStore.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return countReader{rc, &c.get}, nil
}

// changes is the ChangeSource of the bench: it knows what was written.
type changes map[string][]snapshot.Range

func (c changes) FileChanges(path string, _, _ uint64) (snapshot.FileChanges, error) {
	r, ok := c[path]
	if !ok {
		return snapshot.FileChanges{Unchanged: true}, nil
	}
	return snapshot.FileChanges{Ranges: r}, nil
}

func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("dropping the page cache (run as root): %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	return nil
}

func timed(f func() error) (time.Duration, error) {
	if err := dropCaches(); err != nil {
		return 0, err
	}
	t := time.Now()
	err := f()
	return time.Since(t), err
}

func runOne(ctx context.Context, work string, gib int, seed uint64) (result, error) {
	res := result{gib: gib}
	dir := filepath.Join(work, fmt.Sprintf("run-%dgib", gib))
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	if err := makeVolume(src, gib); err != nil {
		return res, err
	}
	ls, err := localdir.New(filepath.Join(dir, "store"))
	if err != nil {
		return res, err
	}
	st := &counting{ObjectStore: ls}
	key := make([]byte, 32)
	rand.Read(key)
	if err := snapshot.Init(ctx, st, snapshot.InitOptions{Key: key}); err != nil {
		return res, err
	}
	repo, err := snapshot.Open(ctx, st, snapshot.Options{Key: key})
	if err != nil {
		return res, err
	}
	var m1 *snapshot.Manifest
	res.initial, err = timed(func() (err error) {
		m1, err = repo.Create(ctx, "v", src, snapshot.CreateOptions{StatCache: filepath.Join(dir, "src.cache")})
		return err
	})
	if err != nil {
		return res, err
	}
	res.initialUp = st.put.Swap(0)
	res.unchanged, err = timed(func() error {
		m, err := repo.Create(ctx, "v", src, snapshot.CreateOptions{Parent: m1.ID, StatCache: filepath.Join(dir, "src.cache"), SkipUnchanged: true})
		if err == nil {
			res.unchangedFlag = m.Unchanged
		}
		return err
	})
	if err != nil {
		return res, err
	}
	res.unchangedUp = st.put.Swap(0)

	// Cold restore against dd + sync of the same files.
	cold := filepath.Join(dir, "cold")
	res.cold, err = timed(func() error { return repo.Restore(ctx, "v", m1.ID, cold, snapshot.RestoreOptions{}) })
	if err != nil {
		return res, err
	}
	if err := os.RemoveAll(cold); err != nil {
		return res, err
	}
	ddDir := filepath.Join(dir, "dd")
	os.MkdirAll(ddDir, 0o755)
	res.dd, err = timed(func() error { return ddCopy(src, ddDir) })
	if err != nil {
		return res, err
	}
	os.RemoveAll(ddDir)

	// Pre-stage two copies of the first snapshot, then change the source.
	inPlace, staged := filepath.Join(dir, "inplace"), filepath.Join(dir, "staged")
	stagedCache := filepath.Join(dir, "staged.cache")
	if err := repo.Restore(ctx, "v", m1.ID, inPlace, snapshot.RestoreOptions{}); err != nil {
		return res, err
	}
	if err := repo.Restore(ctx, "v", m1.ID, staged, snapshot.RestoreOptions{StatCache: stagedCache}); err != nil {
		return res, err
	}
	ch, err := scatter(src, seed)
	if err != nil {
		return res, err
	}
	var m2 *snapshot.Manifest
	st.put.Store(0)
	res.snapSrc, err = timed(func() (err error) {
		m2, err = repo.Create(ctx, "v", src, snapshot.CreateOptions{Parent: m1.ID, Changes: ch})
		return err
	})
	if err != nil {
		return res, err
	}
	res.upSrc, res.readSrc = st.put.Swap(0), m2.Stats.BytesRead
	// The next Create has the same parent: without this it would find
	// the chunks just uploaded through their pack indexes (as a rerun
	// after an interruption does) and upload nothing.
	if err := deleteIndexes(ctx, st, "index/v/"+m1.ID+"/"); err != nil {
		return res, err
	}
	var m3 *snapshot.Manifest
	res.snapStat, err = timed(func() (err error) {
		m3, err = repo.Create(ctx, "v", src, snapshot.CreateOptions{Parent: m1.ID, StatCache: filepath.Join(dir, "src.cache")})
		return err
	})
	if err != nil {
		return res, err
	}
	res.upStat, res.readStat = st.put.Swap(0), m3.Stats.BytesRead

	st.get.Store(0)
	res.inPlace, err = timed(func() error {
		return repo.Restore(ctx, "v", m2.ID, inPlace, snapshot.RestoreOptions{Previous: m1.ID, InPlace: true})
	})
	if err != nil {
		return res, err
	}
	res.fetchedInPlace = st.get.Load()
	res.staged, err = timed(func() error {
		return repo.Restore(ctx, "v", m2.ID, staged, snapshot.RestoreOptions{StatCache: stagedCache})
	})
	if err != nil {
		return res, err
	}
	for _, d := range []string{inPlace, staged} {
		if err := sameTree(src, d); err != nil {
			return res, fmt.Errorf("restored %s differs from the source: %w", d, err)
		}
	}
	return res, nil
}

// makeVolume writes gib GiB of half-empty pages in 256 MiB files.
func makeVolume(dir string, gib int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := 0; i < gib*4; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("rel.%d", i)))
		if err != nil {
			return err
		}
		for off := 0; off < fileSize; off += len(buf) {
			clear(buf)
			for p := 0; p < len(buf); p += pageSize {
				rand.Read(buf[p : p+pageSize/2])
			}
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	// Old timestamps: the files are not "racy" for the stat cache.
	old := time.Now().Add(-time.Hour)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Chtimes(filepath.Join(dir, e.Name()), old, old)
	}
	syscall.Sync()
	return nil
}

// scatter writes changePage new half-empty pages at random page offsets
// over the volume and returns them as a ChangeSource.
func scatter(dir string, seed uint64) (changes, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	r := mrand.New(mrand.NewPCG(seed, 42))
	pagesPerFile := fileSize / pageSize
	seen := map[[2]int]bool{}
	ch := changes{}
	page := make([]byte, pageSize)
	for len(seen) < changePage {
		k := [2]int{r.IntN(len(entries)), r.IntN(pagesPerFile)}
		if seen[k] {
			continue
		}
		seen[k] = true
		name := entries[k[0]].Name()
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		rand.Read(page[:pageSize/2])
		_, err = f.WriteAt(page, int64(k[1])*pageSize)
		f.Close()
		if err != nil {
			return nil, err
		}
		ch[name] = append(ch[name], snapshot.Range{Off: uint64(k[1]) * pageSize, Len: pageSize})
	}
	for _, rs := range ch {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	}
	return ch, nil
}

// ddCopy copies every file of src into dst with dd (4 MiB blocks), then
// syncs: the disk's floor for writing the same bytes.
func ddCopy(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		c := exec.Command("dd", "if="+filepath.Join(src, e.Name()), "of="+filepath.Join(dst, e.Name()), "bs=4M", "status=none")
		c.Stderr = os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("dd: %w", err)
		}
	}
	f, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// sameTree compares the regular files of two directories byte for byte.
func sameTree(a, b string) error {
	entries, err := os.ReadDir(a)
	if err != nil {
		return err
	}
	for _, e := range entries {
		x, err := os.ReadFile(filepath.Join(a, e.Name()))
		if err != nil {
			return err
		}
		y, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil {
			return err
		}
		if !bytes.Equal(x, y) {
			return errors.New(e.Name() + " differs")
		}
	}
	return nil
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func deleteIndexes(ctx context.Context, st transfer.ObjectStore, prefix string) error {
	var keys []string
	if err := st.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
