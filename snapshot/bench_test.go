package snapshot

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer/localdir"
)

// Benchmarks of the snapshot engine against the local-directory store
// (transfer/localdir), with tar | zstd -1 -T0 on the same data as the
// yardstick:
//
//	go test ./snapshot -run '^$' -bench . -benchtime 3x
//
// Data sets: "random" is one 1 GiB incompressible file; "db" is the
// PostgreSQL data directory named by PORTVOL_BENCH_PGDATA (for example
// after pgbench -i -s 50), or else 512 MiB of synthesized 8 KiB heap pages.
// Reported: MB/s of volume data and "cores", CPU time over wall time.
// Data, stores and tar output go to PORTVOL_BENCH_DIR (default: the
// system temporary directory); /dev/shm takes the disk out of the
// measurement.

var benchData = struct {
	sync.Mutex
	dirs map[string]string
}{dirs: map[string]string{}}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchData.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// dataset returns the directory of a data set and its size, made once
// per process.
func dataset(b *testing.B, kind string) (string, int64) {
	benchData.Lock()
	defer benchData.Unlock()
	if kind == "db" {
		if d := os.Getenv("PORTVOL_BENCH_PGDATA"); d != "" {
			return d, treeSize(b, d)
		}
	}
	if d, ok := benchData.dirs[kind]; ok {
		return d, treeSize(b, d)
	}
	base, err := os.MkdirTemp(os.Getenv("PORTVOL_BENCH_DIR"), "portvol-bench-"+kind+"-")
	if err != nil {
		b.Fatal(err)
	}
	benchData.dirs[kind] = base
	switch kind {
	case "random":
		writeFile(b, filepath.Join(base, "random.bin"), nil, 0o600)
		f, _ := os.OpenFile(filepath.Join(base, "random.bin"), os.O_WRONLY, 0)
		for i := 0; i < 256; i++ {
			f.Write(randBytes(4 << 20))
		}
		f.Close()
	case "db":
		for seg := 0; seg < 8; seg++ {
			writeFile(b, filepath.Join(base, "base", "16384", fmt.Sprintf("16397.%d", seg)), heapPages(64<<20, uint64(seg)), 0o600)
		}
	}
	return base, treeSize(b, base)
}

func treeSize(b *testing.B, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// heapPages synthesizes PostgreSQL heap pages of pgbench_accounts rows:
// page header, line pointers, 61 tuples of (aid, bid, abalance, 84-byte
// blank filler) with tuple headers.
func heapPages(n int, seed uint64) []byte {
	out := make([]byte, n)
	aid := uint32(seed*uint64(n/8192)*61 + 1)
	for p := 0; p+8192 <= n; p += 8192 {
		pg := out[p : p+8192]
		binary.LittleEndian.PutUint64(pg[0:], 0x16B3A28+uint64(p))
		binary.LittleEndian.PutUint16(pg[12:], uint16(24+61*4))
		binary.LittleEndian.PutUint16(pg[14:], uint16(8192-61*128))
		binary.LittleEndian.PutUint16(pg[16:], 8192)
		binary.LittleEndian.PutUint16(pg[18:], 0x2004)
		for i := 0; i < 61; i++ {
			off := 8192 - (i+1)*128
			binary.LittleEndian.PutUint32(pg[24+4*i:], uint32(off)|uint32(121)<<17|1<<15)
			tup := pg[off : off+121]
			binary.LittleEndian.PutUint32(tup[0:], 733) // xmin
			binary.LittleEndian.PutUint32(tup[8:], 0)   // cid
			binary.LittleEndian.PutUint32(tup[12:], uint32(p/8192))
			binary.LittleEndian.PutUint16(tup[16:], uint16(i+1))
			binary.LittleEndian.PutUint16(tup[18:], 4)
			binary.LittleEndian.PutUint16(tup[20:], 0x0902)
			tup[22] = 24
			binary.LittleEndian.PutUint32(tup[24:], aid)
			binary.LittleEndian.PutUint32(tup[28:], (aid-1)/100000+1)
			binary.LittleEndian.PutUint32(tup[32:], 0)
			tup[36] = 0xab // varlena header of the filler
			for j := 37; j < 121; j++ {
				tup[j] = ' '
			}
			aid++
		}
	}
	return out
}

type cpuClock struct {
	wall time.Time
	cpu  time.Duration
	who  int
}

func cpuNow(who int) time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(who int) cpuClock { return cpuClock{time.Now(), cpuNow(who), who} }

func (c cpuClock) report(b *testing.B) {
	wall := time.Since(c.wall)
	b.ReportMetric((cpuNow(c.who)-c.cpu).Seconds()/wall.Seconds(), "cores")
}

func newBenchRepo(b *testing.B, key []byte) (*Repo, string) {
	root, err := os.MkdirTemp(os.Getenv("PORTVOL_BENCH_DIR"), "portvol-bench-store-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	st, err := localdir.New(root)
	if err != nil {
		b.Fatal(err)
	}
	return openTestRepo(b, st, key), root
}

func BenchmarkCreate(b *testing.B) {
	for _, kind := range []string{"random", "db"} {
		for _, enc := range []bool{false, true} {
			name := kind + "/plain"
			var key []byte
			if enc {
				name, key = kind+"/encrypted", testKey
			}
			b.Run(name, func(b *testing.B) {
				src, size := dataset(b, kind)
				b.SetBytes(size)
				b.ResetTimer()
				var stats Stats
				var clock cpuClock
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					r, _ := newBenchRepo(b, key)
					if i == 0 {
						clock = startCPU(syscall.RUSAGE_SELF)
					}
					b.StartTimer()
					m, err := r.Create(context.Background(), "v", src, CreateOptions{})
					if err != nil {
						b.Fatal(err)
					}
					stats = m.Stats
				}
				clock.report(b)
				b.ReportMetric(float64(stats.UploadedBytes)/float64(size), "stored/raw")
			})
		}
	}
}

func BenchmarkCreateNoChange(b *testing.B) {
	src, size := dataset(b, "db")
	r, _ := newBenchRepo(b, testKey)
	cache := filepath.Join(b.TempDir(), "statcache")
	ctx := context.Background()
	time.Sleep(20 * time.Millisecond) // past the racy window of a fresh data set
	m, err := r.Create(ctx, "v", src, CreateOptions{StatCache: cache})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	b.SetBytes(size)
	b.ResetTimer()
	clock := startCPU(syscall.RUSAGE_SELF)
	for i := 0; i < b.N; i++ {
		m2, err := r.Create(ctx, "v", src, CreateOptions{Parent: m.ID, StatCache: cache})
		if err != nil {
			b.Fatal(err)
		}
		if m2.Stats.FilesRead != 0 {
			b.Fatalf("no-change snapshot read %d files", m2.Stats.FilesRead)
		}
	}
	clock.report(b)
}

// BenchmarkCreateAfterChange snapshots PORTVOL_BENCH_PGDATA_AFTER (the
// data directory after some pgbench) with the snapshot of
// PORTVOL_BENCH_PGDATA as parent. The two are different directories, so
// every file is read (inodes differ) and only chunks the parent lacks are
// uploaded: the worst case of the "snapshot after pgbench" step.
func BenchmarkCreateAfterChange(b *testing.B) {
	after := os.Getenv("PORTVOL_BENCH_PGDATA_AFTER")
	if after == "" || os.Getenv("PORTVOL_BENCH_PGDATA") == "" {
		b.Skip("set PORTVOL_BENCH_PGDATA and PORTVOL_BENCH_PGDATA_AFTER")
	}
	src, _ := dataset(b, "db")
	size := treeSize(b, after)
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	var cpu, wall time.Duration
	var stats Stats
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r, _ := newBenchRepo(b, testKey)
		m, err := r.Create(ctx, "v", src, CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		c0, w0 := cpuNow(syscall.RUSAGE_SELF), time.Now()
		b.StartTimer()
		m2, err := r.Create(ctx, "v", after, CreateOptions{Parent: m.ID})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu, wall = cpu+cpuNow(syscall.RUSAGE_SELF)-c0, wall+time.Since(w0)
		stats = m2.Stats
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
	b.ReportMetric(float64(stats.NewBytes)/float64(size), "new/raw")
	b.ReportMetric(float64(stats.UploadedBytes)/float64(size), "stored/raw")
}

func BenchmarkRestore(b *testing.B) {
	for _, kind := range []string{"random", "db"} {
		b.Run(kind, func(b *testing.B) {
			src, size := dataset(b, kind)
			r, _ := newBenchRepo(b, testKey)
			ctx := context.Background()
			m, err := r.Create(ctx, "v", src, CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			clock := startCPU(syscall.RUSAGE_SELF)
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(benchTemp(b), "data")
				if err := r.Restore(ctx, "v", m.ID, dst, RestoreOptions{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dst)
				b.StartTimer()
			}
			clock.report(b)
		})
	}
}

// BenchmarkTarZstd is the yardstick: tar -c DIR | zstd -1 -T0 > file,
// synced as the local store syncs its packs, and its restore,
// zstd -dc file | tar -x, synced as Restore syncs.
func BenchmarkTarZstd(b *testing.B) {
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	for _, kind := range []string{"random", "db"} {
		b.Run(kind+"/create", func(b *testing.B) {
			src, size := dataset(b, kind)
			out := filepath.Join(benchTemp(b), "out.tar.zst")
			b.SetBytes(size)
			b.ResetTimer()
			clock := startCPU(syscall.RUSAGE_CHILDREN)
			for i := 0; i < b.N; i++ {
				sh(b, fmt.Sprintf("tar -C %q -cf - . | zstd -1 -T0 -q -f -o %q && sync -f %q", src, out, out))
			}
			clock.report(b)
		})
		b.Run(kind+"/restore", func(b *testing.B) {
			src, size := dataset(b, kind)
			out := filepath.Join(benchTemp(b), "out.tar.zst")
			sh(b, fmt.Sprintf("tar -C %q -cf - . | zstd -1 -T0 -q -f -o %q", src, out))
			b.SetBytes(size)
			b.ResetTimer()
			clock := startCPU(syscall.RUSAGE_CHILDREN)
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(benchTemp(b), "x")
				os.Mkdir(dst, 0o700)
				sh(b, fmt.Sprintf("zstd -dc -q %q | tar -C %q -xf - && sync -f %q", out, dst, dst))
				b.StopTimer()
				os.RemoveAll(dst)
				b.StartTimer()
			}
			clock.report(b)
		})
	}
}

func benchTemp(b *testing.B) string {
	d, err := os.MkdirTemp(os.Getenv("PORTVOL_BENCH_DIR"), "portvol-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func sh(b *testing.B, script string) {
	cmd := exec.Command("sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}
