package btrfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/localcopy"
	pvsnap "github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/memstore"
)

// countingStore counts the bytes written to a store.
type countingStore struct {
	transfer.ObjectStore
	put atomic.Uint64
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := c.ObjectStore.Put(ctx, key, r, size)
	if err == nil {
		c.put.Add(uint64(size))
	}
	return err
}

func (c *countingStore) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	e, err := c.ObjectStore.PutIfAbsent(ctx, key, data)
	if err == nil {
		c.put.Add(uint64(len(data)))
	}
	return e, err
}

func newRepo(t *testing.T) (*pvsnap.Repo, *countingStore) {
	t.Helper()
	ctx := context.Background()
	st := &countingStore{ObjectStore: memstore.New()}
	if err := pvsnap.Init(ctx, st, pvsnap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := pvsnap.Open(ctx, st, pvsnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return repo, st
}

// snapWithSource snapshots the instant cur with the change source from
// base, or without a source when base is the zero Frozen.
func snapWithSource(t *testing.T, c *Copies, repo *pvsnap.Repo, parent string, base, cur localcopy.Frozen) *pvsnap.Manifest {
	t.Helper()
	ctx := context.Background()
	opts := pvsnap.CreateOptions{Parent: parent}
	if base.ID != "" {
		src, err := c.ChangeSource(ctx, base, cur)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		opts.Changes = src
	}
	m, err := repo.Create(ctx, cur.Volume, cur.Path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// keepBase makes f the base and returns it under its new name.
func keepBase(t *testing.T, c *Copies, f localcopy.Frozen) localcopy.Frozen {
	t.Helper()
	ctx := context.Background()
	if err := c.KeepBase(ctx, f); err != nil {
		t.Fatal(err)
	}
	b, ok, err := c.Base(ctx, f.Volume)
	if err != nil || !ok {
		t.Fatalf("base after KeepBase: %v, %v", ok, err)
	}
	return b
}

// restoredEquals restores snapshot id into a fresh directory and compares
// every regular file's content and every name with the instant's tree.
func restoredEquals(t *testing.T, repo *pvsnap.Repo, volume, id, want string) {
	t.Helper()
	dir := filepath.Join(newStateDir(t), "restored")
	defer os.RemoveAll(filepath.Dir(dir))
	if err := repo.Restore(context.Background(), volume, id, dir, pvsnap.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		names[rel] = true
		if !d.Type().IsRegular() {
			return nil
		}
		return sameFile(p, filepath.Join(dir, rel))
	})
	if err != nil {
		t.Fatalf("restored snapshot %s differs from the instant it was read from: %v", id, err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !names[rel] {
			return fmt.Errorf("%s is in the restore, not in the instant", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("restored snapshot %s: %v", id, err)
	}
}

// sameFile compares two files 4 MiB at a time, where either holds data
// (elsewhere both are holes, so both read as zeros).
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if sa.Size() != sb.Size() {
		return fmt.Errorf("%s: size %d, restored %d", a, sa.Size(), sb.Size())
	}
	var data []localcopy.Range
	for _, f := range []*os.File{fa, fb} {
		rs, err := dataRanges(f, sa.Size())
		if err != nil {
			return err
		}
		data = append(data, rs...)
	}
	x, y := make([]byte, 4<<20), make([]byte, 4<<20)
	for _, r := range mergeRanges(data) {
		for off := r.Off; off < r.Off+r.Len; off += int64(len(x)) {
			n := int(min(int64(len(x)), r.Off+r.Len-off))
			if _, err := fa.ReadAt(x[:n], off); err != nil {
				return err
			}
			if _, err := fb.ReadAt(y[:n], off); err != nil {
				return err
			}
			if !bytes.Equal(x[:n], y[:n]) {
				for i := 0; i < n; i++ {
					if x[i] != y[i] {
						return fmt.Errorf("%s differs from byte %d on", a, off+int64(i))
					}
				}
			}
		}
	}
	return nil
}

// dataRanges lists f's data (SEEK_DATA, SEEK_HOLE), rounded out to 4 KiB.
func dataRanges(f *os.File, size int64) ([]localcopy.Range, error) {
	var out []localcopy.Range
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			return nil, err
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		d = d &^ 4095
		h = min(size, (h+4095)&^4095)
		out = append(out, localcopy.Range{Off: d, Len: h - d})
		off = h
	}
	return out, nil
}

// halfEmptyPage is an 8 KiB database-like page: 4 KiB random, 4 KiB zero.
func halfEmptyPage(r *mrand.Rand, p []byte) {
	clear(p)
	for i := 0; i < 4096; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			p[i+k] = byte(v >> (8 * k))
		}
	}
}

// The case on a real btrfs: a 4 GiB sparse nodatacow file with
// 64 MiB of half-empty pages, then 1024 scattered 8 KiB page writes
// (8 MiB). The snapshot of the change, with the ChangeSource, reads at
// most 4× and uploads at most 2× the bytes written, and restores to
// exactly the instant it was read from.
func TestChangeSourceScatteredPages(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	const name = "chgsrc-pages"
	if err := c.Create(ctx, name, localcopy.CreateOptions{NoCOW: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, name)
	const size, pages = 4 << 30, 1024
	path := filepath.Join(c.Path(name), "table")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(11, 1))
	run := make([]byte, 1<<20)
	for i := int64(0); i < 64; i++ {
		for p := 0; p < len(run); p += 8192 {
			halfEmptyPage(r, run[p:p+8192])
		}
		if _, err := f.WriteAt(run, i*(64<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	repo, st := newRepo(t)
	b := freeze(t, c, name)
	m1 := snapWithSource(t, c, repo, "", localcopy.Frozen{}, b)
	base := keepBase(t, c, b)

	page := make([]byte, 8192)
	seen := map[int64]bool{}
	for len(seen) < pages {
		off := r.Int64N(size/8192) * 8192
		if seen[off] {
			continue
		}
		seen[off] = true
		halfEmptyPage(r, page)
		if _, err := f.WriteAt(page, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	cur := freeze(t, c, name)
	defer c.Release(ctx, cur)
	st.put.Store(0)
	start := time.Now()
	m2 := snapWithSource(t, c, repo, m1.ID, base, cur)
	took := time.Since(start)
	changed := uint64(pages * 8192)
	up := st.put.Load()
	t.Logf("16 KiB blocks, S2: %d bytes changed; the snapshot read %d (%.2f×), uploaded %d (%.2f×) in %v",
		changed, m2.Stats.BytesRead, float64(m2.Stats.BytesRead)/float64(changed), up, float64(up)/float64(changed), took)
	if m2.Stats.BytesRead > 4*changed {
		t.Errorf("the snapshot of %d changed bytes read %d bytes (more than 4×)", changed, m2.Stats.BytesRead)
	}
	if up > 2*changed {
		t.Errorf("the snapshot of %d changed bytes uploaded %d bytes (more than 2×)", changed, up)
	}
	restoredEquals(t, repo, name, m2.ID, cur.Path)
}

// Seeded random changes between kept instants — writes, punched holes,
// preallocation, truncation up and down, clones of other files' ranges,
// renames over other files, hard links, deletes, new files, mode changes
// — snapshotted each round with the ChangeSource and restored: the
// restore equals the instant every time. PORTVOL_TEST_SEED replays a run.
func TestChangeSourceRandomChanges(t *testing.T) {
	c := shared(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PORTVOL_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	t.Logf("seed %d (PORTVOL_TEST_SEED=%d replays it)", seed, seed)
	for _, nocow := range []bool{true, false} {
		t.Run(fmt.Sprintf("nocow=%v", nocow), func(t *testing.T) {
			randomChanges(t, c, mrand.New(mrand.NewPCG(seed, map[bool]uint64{true: 1, false: 2}[nocow])), nocow)
		})
	}
}

func randomChanges(t *testing.T, c *Copies, r *mrand.Rand, nocow bool) {
	ctx := context.Background()
	name := fmt.Sprintf("chgsrc-rand-%v", nocow)
	if err := c.Create(ctx, name, localcopy.CreateOptions{NoCOW: nocow}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, name)
	root := c.Path(name)
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := []string{"a", "b", "c", "d/e", "d/f", "g"}
	const maxSize = 3 << 20
	buf := make([]byte, 256<<10)
	pick := func() string { return filepath.Join(root, files[r.IntN(len(files))]) }
	write := func(p string, off int64, n int) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range files {
		write(filepath.Join(root, p), 0, r.IntN(len(buf)))
		write(filepath.Join(root, p), int64(r.IntN(maxSize)), r.IntN(len(buf)))
	}
	repo, _ := newRepo(t)
	b := freeze(t, c, name)
	m := snapWithSource(t, c, repo, "", localcopy.Frozen{}, b)
	base := keepBase(t, c, b)

	for round := 0; round < 6; round++ {
		var ops []string
		for n := 2 + r.IntN(10); n > 0; n-- {
			p := pick()
			rel, _ := filepath.Rel(root, p)
			op := r.IntN(10)
			fd, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				op = 9 // the file is gone: make it again
			}
			switch op {
			case 0, 1:
				off, n := int64(r.IntN(maxSize)), 1+r.IntN(len(buf))
				fd.Close()
				write(p, off, n)
				ops = append(ops, fmt.Sprintf("write %s %d+%d", rel, off, n))
			case 2:
				off, n := int64(r.IntN(maxSize)), int64(1+r.IntN(1<<20))
				err = unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
				ops = append(ops, fmt.Sprintf("punch %s %d+%d", rel, off, n))
			case 3:
				off, n := int64(r.IntN(maxSize)), int64(1+r.IntN(1<<20))
				err = unix.Fallocate(int(fd.Fd()), 0, off, n)
				ops = append(ops, fmt.Sprintf("fallocate %s %d+%d", rel, off, n))
			case 4:
				n := int64(r.IntN(maxSize))
				err = fd.Truncate(n)
				ops = append(ops, fmt.Sprintf("truncate %s %d", rel, n))
			case 5:
				src := pick()
				s, err2 := os.Open(src)
				if err2 != nil {
					fd.Close()
					continue
				}
				si, _ := s.Stat()
				if si.Size() < 8192 {
					s.Close()
					fd.Close()
					continue
				}
				soff := r.Int64N(si.Size()/4096) * 4096
				n := min(si.Size()-soff, int64(1+r.IntN(64))*4096)
				if n%4096 != 0 && soff+n != si.Size() {
					n -= n % 4096
				}
				doff := r.Int64N(maxSize/4096) * 4096
				if n%4096 != 0 {
					// An unaligned tail may only be cloned to the end of the
					// destination.
					di, _ := fd.Stat()
					if doff < di.Size() {
						n -= n % 4096
					}
				}
				// Hard links (link g to a) make two paths one file, and
				// a clone within one file must not overlap itself (EINVAL).
				pi, _ := fd.Stat()
				if n > 0 && src != p && !os.SameFile(si, pi) {
					err = unix.IoctlFileCloneRange(int(fd.Fd()), &unix.FileCloneRange{
						Src_fd: int64(s.Fd()), Src_offset: uint64(soff), Src_length: uint64(n), Dest_offset: uint64(doff),
					})
					srel, _ := filepath.Rel(root, src)
					ops = append(ops, fmt.Sprintf("clone %s %d+%d to %s %d", srel, soff, n, rel, doff))
				}
				s.Close()
			case 6:
				dst := pick()
				if dst != p {
					err = os.Rename(p, dst)
					drel, _ := filepath.Rel(root, dst)
					ops = append(ops, fmt.Sprintf("rename %s over %s", rel, drel))
				}
			case 7:
				dst := pick()
				if dst != p {
					os.Remove(dst)
					err = os.Link(p, dst)
					drel, _ := filepath.Rel(root, dst)
					ops = append(ops, fmt.Sprintf("link %s to %s", rel, drel))
				}
			case 8:
				err = os.Chmod(p, fs.FileMode(0o600+r.IntN(0o100)))
				ops = append(ops, fmt.Sprintf("chmod %s", rel))
			case 9:
				os.Remove(p)
				write(p, int64(r.IntN(maxSize)), 1+r.IntN(len(buf)))
				ops = append(ops, fmt.Sprintf("recreate %s", rel))
			}
			if fd != nil {
				fd.Close()
			}
			if err != nil && !os.IsNotExist(err) {
				t.Fatalf("round %d, %s: %v", round, ops[len(ops)-1], err)
			}
		}
		cur := freeze(t, c, name)
		m2 := snapWithSource(t, c, repo, m.ID, base, cur)
		t.Logf("round %d: %v; read %d of %d bytes", round, ops, m2.Stats.BytesRead, m2.Stats.DataBytes)
		restoredEquals(t, repo, name, m2.ID, cur.Path)
		if t.Failed() {
			return
		}
		m, base = m2, keepBase(t, c, cur)
	}
}

// A range cloned from another file (FICLONERANGE, what cp --reflink does)
// keeps its source extent's generation, so generations alone miss it;
// the ChangeSource compares extent locations and reads it.
func TestChangeSourceClone(t *testing.T) {
	c := shared(t)
	ctx := context.Background()
	const name = "chgsrc-clone"
	if err := c.Create(ctx, name, localcopy.CreateOptions{NoCOW: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, name)
	x, y := filepath.Join(c.Path(name), "x"), filepath.Join(c.Path(name), "y")
	writeAt(t, x, 0, 1<<20)
	writeAt(t, y, 0, 1<<20)
	repo, _ := newRepo(t)
	b := freeze(t, c, name)
	m := snapWithSource(t, c, repo, "", localcopy.Frozen{}, b)
	base := keepBase(t, c, b)

	fx, err := os.Open(x)
	if err != nil {
		t.Fatal(err)
	}
	defer fx.Close()
	fy, err := os.OpenFile(y, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fy.Close()
	if err := unix.IoctlFileCloneRange(int(fy.Fd()), &unix.FileCloneRange{
		Src_fd: int64(fx.Fd()), Src_offset: 0, Src_length: 256 << 10, Dest_offset: 256 << 10,
	}); err != nil {
		t.Fatal(err)
	}
	cur := freeze(t, c, name)
	defer c.Release(ctx, cur)
	src, err := c.ChangeSource(ctx, base, cur)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(cur.Path, "y"), &st); err != nil {
		t.Fatal(err)
	}
	fc, err := src.FileChanges("y", st.Ino, uint64(st.Size))
	if err != nil {
		t.Fatal(err)
	}
	covered := fc.Ranges == nil
	for _, r := range fc.Ranges {
		covered = covered || (r.Off <= 256<<10 && r.Off+r.Len >= 512<<10)
	}
	if fc.Unchanged || !covered {
		t.Errorf("a clone of 256 KiB at 256 KiB: changes %+v do not cover it", fc)
	}
	if fc, err := src.FileChanges("x", 0, 1<<20); err != nil || fc.Unchanged || fc.Ranges != nil {
		t.Errorf("a path whose inode differs must be read whole: %+v, %v", fc, err)
	}
	m2 := snapWithSource(t, c, repo, m.ID, base, cur)
	restoredEquals(t, repo, name, m2.ID, cur.Path)
}
