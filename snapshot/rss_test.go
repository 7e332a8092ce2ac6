package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer/localdir"
)

// Peak RSS stays below 150 MB while snapshotting and restoring volumes
// of up to 10 GiB: memory is block buffers and packs in flight, plus ~90
// bytes per 16 KiB chunk (the chunk table and its
// index: 57 MiB at 10 GiB). The volume is 512 MiB by default; set
// PORTVOL_RSS_BYTES=10737418240 for the 10 GB acceptance run (655 360
// chunk references).
func TestPeakRSS(t *testing.T) {
	if os.Getenv("PORTVOL_RSS_CHILD") != "" {
		peakRSSChild(t) // this process is the one TestPeakRSS measures
		return
	}
	if testing.Short() {
		t.Skip("writes a 512 MiB volume; not in -short mode")
	}
	size := int64(512 << 20)
	if s := os.Getenv("PORTVOL_RSS_BYTES"); s != "" {
		var err error
		if size, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSS$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PORTVOL_RSS_CHILD=1", fmt.Sprintf("PORTVOL_RSS_BYTES=%d", size), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if c := regexp.MustCompile(`(?m)^chunks (\d+) (\d+)$`).FindStringSubmatch(string(out)); c != nil {
		t.Logf("%s chunk references (%s distinct chunks) in the snapshot", c[1], c[2])
	}
	re := regexp.MustCompile(`(?m)^peak (\w+) (\d+)$`)
	found := re.FindAllStringSubmatch(string(out), -1)
	if len(found) != 2 {
		t.Fatalf("child output lacks measurements:\n%s", out)
	}
	for _, f := range found {
		kb, _ := strconv.ParseInt(f[2], 10, 64)
		t.Logf("%s of %d MiB: peak RSS %d MB", f[1], size>>20, kb*1024/1e6)
		if kb*1024 >= 150e6 {
			t.Errorf("%s: peak RSS %d MB, limit 150 MB", f[1], kb*1024/1e6)
		}
	}
}

// peakRSSChild snapshots and restores a fresh volume and prints the peak
// RSS of each, in a process of its own.
func peakRSSChild(t *testing.T) {
	size, _ := strconv.ParseInt(os.Getenv("PORTVOL_RSS_BYTES"), 10, 64)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	genVolume(t, src, size)
	store, err := localdir.New(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	r := openTestRepo(t, store, testKey)
	ctx := context.Background()

	resetPeak(t)
	m, err := r.Create(ctx, "v", src, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("peak create %d\n", peakKB(t))
	refs := 0
	for _, n := range m.Nodes {
		refs += len(n.Blocks)
	}
	fmt.Printf("chunks %d %d\n", refs, len(m.Chunks))
	resetPeak(t)
	if err := r.Restore(ctx, "v", m.ID, filepath.Join(base, "dst"), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("peak restore %d\n", peakKB(t))
}

// genVolume writes size bytes of files: one large incompressible file
// and 64 MiB files alternating incompressible and database-like data,
// in 4 MiB pieces.
func genVolume(t testing.TB, dir string, size int64) {
	t.Helper()
	piece := int64(4 << 20)
	write := func(name string, n int64, db bool) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for off := int64(0); off < n; off += piece {
			var b []byte
			if db {
				b = dbLike(int(min(piece, n-off)), uint64(off))
			} else {
				b = randBytes(int(min(piece, n-off)))
			}
			if _, err := f.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("large", size/2, false)
	left := size - size/2
	for i := 0; left > 0; i++ {
		n := min(left, 64<<20)
		write(fmt.Sprintf("seg.%03d", i), n, i%2 == 1)
		left -= n
	}
}

// resetPeak forgets the peak so far (clear_refs 5 resets VmHWM).
func resetPeak(t testing.TB) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

func peakKB(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
