// Command formatstudy measures the choices behind snapshot format version
// 2 (snapshot/doc.go): chunk size, compressor, and the list-part fanout,
// on database-like data. It reads nothing but the directories it is given
// and writes only to stdout.
//
//	go run ./bench/formatstudy -pg-before DIR -pg-after DIR
//
// DIR are copies of a PostgreSQL data directory before and after a run of
// pgbench (make bench-format builds them with a random-text filler column,
// so the table does not compress like pgbench's blank filler).
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/zeebo/blake3"
)

type codec struct {
	name string
	enc  func(dst, src []byte) []byte
	dec  func(dst, src []byte) ([]byte, error)
}

func codecs() []codec {
	zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	zr, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	var lc lz4.Compressor
	return []codec{
		{"zstd fastest", func(d, s []byte) []byte { return zw.EncodeAll(s, d[:0]) }, func(d, s []byte) ([]byte, error) { return zr.DecodeAll(s, d[:0]) }},
		{"s2", func(d, s []byte) []byte { return s2.Encode(d[:cap(d)], s) }, func(d, s []byte) ([]byte, error) { return s2.Decode(d[:cap(d)], s) }},
		{"s2 better", func(d, s []byte) []byte { return s2.EncodeBetter(d[:cap(d)], s) }, func(d, s []byte) ([]byte, error) { return s2.Decode(d[:cap(d)], s) }},
		{"lz4", func(d, s []byte) []byte {
			n, _ := lc.CompressBlock(s, d[:cap(d)])
			if n == 0 {
				return append(d[:0], s...)
			}
			return d[:n]
		}, func(d, s []byte) ([]byte, error) {
			n, err := lz4.UncompressBlock(s, d[:cap(d)])
			return d[:n], err
		}},
	}
}

// halfEmpty is n bytes of 8 KiB pages: 4 KiB random, 4 KiB zero.
func halfEmpty(n int) []byte {
	b := make([]byte, n)
	for p := 0; p < n; p += 8192 {
		rand.Read(b[p : p+4096])
	}
	return b
}

// randomText is n bytes of random base64-alphabet text.
func randomText(n int) []byte {
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = a[b[i]&63]
	}
	return b
}

// relFiles concatenates the relation files under dir/base.
func relFiles(dir string) ([]byte, map[string][]byte) {
	files := map[string][]byte{}
	var all []byte
	var names []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, p := range names {
		data, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = data
		all = append(all, data...)
	}
	return all, files
}

func main() {
	before := flag.String("pg-before", "", "PostgreSQL data directory before pgbench")
	after := flag.String("pg-after", "", "the same after pgbench")
	mib := flag.Int("mib", 256, "MiB of synthetic data per set")
	disk := flag.String("disk", "", "directory on the disk to measure O_DIRECT write sizes on (256 MiB written)")
	flag.Parse()
	if *disk != "" {
		directWrites(*disk)
		return
	}
	sets := []struct {
		name string
		data []byte
	}{
		{"half-empty pages", halfEmpty(*mib << 20)},
		{"random text", randomText(*mib << 20)},
	}
	var pgB, pgA map[string][]byte
	if *before != "" {
		all, files := relFiles(filepath.Join(*before, "base"))
		pgB = files
		if len(all) > *mib<<20 {
			all = all[:*mib<<20]
		}
		sets = append(sets, struct {
			name string
			data []byte
		}{"pgbench, random-text filler", all})
		_, pgA = relFiles(filepath.Join(*after, "base"))
	}
	fmt.Println("## Compressors: stored size and single-core speed")
	fmt.Println()
	fmt.Println("| data | chunk | codec | stored | compress MB/s | decompress MB/s |")
	fmt.Println("|---|--:|---|--:|--:|--:|")
	for _, s := range sets {
		for _, cs := range []int{16 << 10, 64 << 10, 1 << 20} {
			for _, c := range codecs() {
				stored, ct, dt := measure(c, s.data, cs)
				fmt.Printf("| %s | %d KiB | %s | %.1f %% | %.0f | %.0f |\n", s.name, cs>>10, c.name,
					100*float64(stored)/float64(len(s.data)), float64(len(s.data))/ct.Seconds()/1e6, float64(len(s.data))/dt.Seconds()/1e6)
			}
		}
	}
	fmt.Println()
	fmt.Println("## Cost of 16 MiB of scattered 8 KiB page writes (2048 pages) in 1 GiB of half-empty pages")
	fmt.Println()
	pageChange(1 << 30)
	if pgB != nil {
		fmt.Println()
		fmt.Println("## pgbench (random-text filler): bytes in chunks not present before, by chunk size")
		fmt.Println()
		pgChange(pgB, pgA)
	}
}

func measure(c codec, data []byte, cs int) (int, time.Duration, time.Duration) {
	dst := make([]byte, 0, cs+cs/4+1024)
	out := make([]byte, 0, cs)
	stored := 0
	var ct, dt time.Duration
	for off := 0; off < len(data); off += cs {
		chunk := data[off:min(off+cs, len(data))]
		t := time.Now()
		z := c.enc(dst, chunk)
		ct += time.Since(t)
		if len(z) >= len(chunk)-len(chunk)/32 {
			stored += len(chunk) // stored raw
			continue
		}
		stored += len(z)
		t = time.Now()
		o, err := c.dec(out, z)
		dt += time.Since(t)
		if err != nil || !bytes.Equal(o, chunk) {
			panic(fmt.Sprintf("%s: round trip failed: %v", c.name, err))
		}
	}
	return stored, ct, max(dt, time.Microsecond)
}

// refBytes is the size of one chunk reference in a list part: chunk ID,
// pack number, offset, length, flags (varints at typical sizes).
const refBytes = 32 + 1 + 4 + 2 + 1 + 1

func pageChange(size int) {
	vol := halfEmpty(size)
	r := mrand.New(mrand.NewPCG(1, 2))
	pages := size / 8192
	changed := map[int]bool{}
	for len(changed) < 2048 {
		changed[r.IntN(pages)] = true
	}
	zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	newVol := bytes.Clone(vol)
	for p := range changed {
		rand.Read(newVol[p*8192 : p*8192+4096])
	}
	fmt.Println("| chunk | chunks | changed chunks | their data (s2) | list parts changed (64 refs) | their size | top list | upload / changed |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, cs := range []int{8 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10, 1 << 20} {
		n := size / cs
		var data int
		parts := map[int]bool{}
		nc := 0
		for c := 0; c < n; c++ {
			a, b := vol[c*cs:(c+1)*cs], newVol[c*cs:(c+1)*cs]
			if blake3.Sum256(a) != blake3.Sum256(b) {
				nc++
				data += len(s2.Encode(nil, b))
				parts[c/64] = true
			}
		}
		_ = zw
		partSize := 64*refBytes + 40
		top := (n + 63) / 64 * (refBytes + 1)
		up := data + len(parts)*partSize + top
		fmt.Printf("| %d KiB | %d | %d | %.1f MiB | %d | %.1f MiB | %.0f KiB | %.2f |\n", cs>>10, n, nc, float64(data)/(1<<20),
			len(parts), float64(len(parts)*partSize)/(1<<20), float64(top)/1024, float64(up)/float64(16<<20))
	}
}

func pgChange(before, after map[string][]byte) {
	total := 0
	for _, d := range after {
		total += len(d)
	}
	fmt.Printf("Relation files after: %.0f MiB.\n\n", float64(total)/(1<<20))
	fmt.Println("| chunk | chunks | new chunks | new bytes raw | new bytes s2 | list parts changed (64 refs) | upload (s2 + parts + top) |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|")
	for _, cs := range []int{8 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10, 1 << 20} {
		known := map[[32]byte]bool{}
		for _, d := range before {
			for off := 0; off < len(d); off += cs {
				known[blake3.Sum256(d[off:min(off+cs, len(d))])] = true
			}
		}
		var n, nc, raw, z, partsChanged int
		for name, d := range after {
			od := before[name]
			for off := 0; off < len(d); off += cs {
				c := d[off:min(off+cs, len(d))]
				n++
				id := blake3.Sum256(c)
				if !known[id] {
					known[id] = true
					nc++
					raw += len(c)
					z += len(s2.Encode(nil, c))
				}
				if off%(64*cs) == 0 {
					end := min(off+64*cs, len(d))
					if end > len(od) || !bytes.Equal(d[off:end], od[off:end]) {
						partsChanged++
					}
				}
			}
		}
		top := (n + 63) / 64 * (refBytes + 1)
		up := z + partsChanged*(64*refBytes+40) + top
		fmt.Printf("| %d KiB | %d | %d | %.1f MiB | %.1f MiB | %d | %.1f MiB |\n", cs>>10, n, nc, float64(raw)/(1<<20), float64(z)/(1<<20), partsChanged, float64(up)/(1<<20))
	}
}

// directWrites measures writing 256 MiB with O_DIRECT in pieces of each
// size, then fsync, against the same with 4 MiB pieces: what a restore
// pays for splitting its writes (for example at every zero page).
func directWrites(dir string) {
	const total = 256 << 20
	buf := make([]byte, 4<<20+4096)
	off := (4096 - int(uintptr(unsafePointer(buf)))%4096) % 4096
	buf = buf[off : off+4<<20]
	rand.Read(buf)
	fmt.Println("| O_DIRECT write size | MB/s (256 MiB, then fsync) |")
	fmt.Println("|--:|--:|")
	for _, size := range []int{4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		p := filepath.Join(dir, "formatstudy.direct")
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_DIRECT, 0o600)
		if err != nil {
			panic(err)
		}
		unix.Ftruncate(fd, total)
		t := time.Now()
		for o := 0; o < total; o += size {
			if _, err := unix.Pwrite(fd, buf[:size], int64(o)); err != nil {
				panic(err)
			}
		}
		unix.Fsync(fd)
		d := time.Since(t)
		unix.Close(fd)
		os.Remove(p)
		fmt.Printf("| %d KiB | %.0f |\n", size>>10, float64(total)/d.Seconds()/1e6)
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
