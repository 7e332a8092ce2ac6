package snapshot

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/portvol/portvol/internal/needs"
)

// vmFlags returns the VmFlags of the mapping that holds address p.
func vmFlags(t *testing.T, p uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		needs.Missing(t, fmt.Sprintf("no /proc/self/smaps: %v", err))
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) >= 5 && !strings.HasSuffix(fs[0], ":") { // a mapping's header
			var lo, hi uintptr
			if n, _ := fmt.Sscanf(fs[0], "%x-%x", &lo, &hi); n == 2 {
				in = lo <= p && p < hi
			}
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	t.Fatalf("no mapping holds %#x", p)
	return nil
}

// Create's big buffers ask for transparent huge pages (VmFlags "hg" on
// their whole 2 MiB pieces), and are ordinary zeroed Go memory otherwise.
func TestLargeBufferAdvisesHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		needs.Missing(t, "no transparent huge pages in this kernel")
	}
	b := largeBuffer(8 << 20)
	if len(b) != 8<<20 {
		t.Fatalf("len %d", len(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("byte %d is %d, want 0", i, b[i])
		}
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	mid := (p + hugePage - 1) &^ (hugePage - 1)
	if flags := vmFlags(t, mid); !strings.Contains(" "+strings.Join(flags, " ")+" ", " hg ") {
		t.Errorf("the buffer's mapping has VmFlags %v, want hg (MADV_HUGEPAGE)", flags)
	}
	small := largeBuffer(64 << 10)
	if len(small) != 64<<10 {
		t.Fatalf("len %d", len(small))
	}
}
