package snapshot

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64
// (with 4 KiB base pages).
const hugePage = 2 << 20

// largeBuffer returns a new zeroed buffer of n bytes whose whole 2 MiB
// pieces the kernel is asked to back with transparent huge pages
// (madvise MADV_HUGEPAGE, which THP's default "madvise" mode honours):
// Create's pack and read buffers are touched once, in full, and on
// virtual machines each 4 KiB page fault can cost tens of microseconds
// (measured: first touch of 64 MiB of Go heap took 0.27–1.1 s on the
// benchmark machine, 7–150 ms with huge pages). The memory stays Go's: the
// advice only changes how the kernel backs it.
func largeBuffer(n int) []byte {
	b := make([]byte, n)
	if n < 2*hugePage {
		return b
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + hugePage - 1) &^ (hugePage - 1)
	end := (p + uintptr(n)) &^ (hugePage - 1)
	if end > start {
		// Only a hint: without THP nothing changes.
		_ = unix.Madvise(b[start-p:end-p], unix.MADV_HUGEPAGE)
	}
	return b
}
