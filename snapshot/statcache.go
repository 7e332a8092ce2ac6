package snapshot

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
)

// The stat cache is a local file (never in the store) that says: at time
// Taken, the file at each path had this size, mtime, ctime and inode and
// held the content that snapshot Snapshot records for that path. Create
// writes it for the snapshot it makes and Restore for the snapshot it
// restores; Create reads it to skip unchanged files without trusting the
// inode and ctime recorded by another host.

// defaultRacyWindow: a file whose timestamps fall this close to (or after)
// the moment it was observed may change again without its timestamps
// changing, so it is re-read. Linux stamps files from a coarse clock (one
// tick, at most 10 ms); the window is ten ticks. Timestamps without a
// sub-second part come from a filesystem with (up to) 2-second
// granularity and get coarseRacyWindow.
const (
	defaultRacyWindow = 100 * time.Millisecond
	coarseRacyWindow  = 2 * time.Second
)

const (
	sourceCreate  = 'c'
	sourceRestore = 'r'
	maxStatCache  = 1 << 30
)

var statCacheMagic = []byte("PVSC")

type statEntry struct {
	Size  uint64
	Mtime int64
	Ctime int64
	Ino   uint64
}

func statEntryOf(st *unix.Stat_t) statEntry {
	return statEntry{Size: uint64(st.Size), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino}
}

type statCache struct {
	Snapshot string
	Source   byte
	Taken    int64 // ns; Create: its start; Restore: when it took the stats
	Entries  map[string]statEntry
}

// unchanged reports whether the file at path, now with stat now, still
// holds the content it had when the cache was written.
func (c *statCache) unchanged(path string, now statEntry, window time.Duration) bool {
	if c == nil {
		return false
	}
	e, ok := c.Entries[path]
	return ok && e == now && notRacy(e, c.Taken, c.Source == sourceCreate, window)
}

// notRacy: any write after time taken gives the file an mtime (and a
// write or a utimes a ctime) at or after taken minus the clock's
// granularity, so timestamps clearly older than taken prove nothing
// happened since. Restore owns its staging directory until it took its
// stats, so there only mtime (which it set to an old value) must be old.
func notRacy(e statEntry, taken int64, checkCtime bool, window time.Duration) bool {
	if e.Mtime%1e9 == 0 && (!checkCtime || e.Ctime%1e9 == 0) {
		window = max(window, coarseRacyWindow)
	}
	limit := taken - int64(window)
	return e.Mtime < limit && (!checkCtime || e.Ctime < limit)
}

func encodeStatCache(c *statCache) []byte {
	var e enc
	e.fixed(statCacheMagic)
	e.u8(FormatVersion)
	e.str(c.Snapshot)
	e.u8(c.Source)
	e.varint(c.Taken)
	e.uvarint(uint64(len(c.Entries)))
	for _, p := range slices.Sorted(maps.Keys(c.Entries)) {
		s := c.Entries[p]
		e.str(p)
		e.uvarint(s.Size)
		e.varint(s.Mtime)
		e.varint(s.Ctime)
		e.uvarint(s.Ino)
	}
	sum := blake3.Sum256(e.b)
	return append(e.b, sum[:]...)
}

func decodeStatCache(data []byte) (*statCache, error) {
	if len(data) < 5+32 {
		return nil, fmt.Errorf("stat cache too short: %w", ErrCorrupt)
	}
	body, sum := data[:len(data)-32], data[len(data)-32:]
	want := blake3.Sum256(body)
	if subtle.ConstantTimeCompare(want[:], sum) != 1 {
		return nil, fmt.Errorf("stat cache checksum: %w", ErrCorrupt)
	}
	return decodeStatCacheBody(body)
}

func decodeStatCacheBody(body []byte) (*statCache, error) {
	d := dec{b: body}
	if !bytes.Equal(d.fixed(4), statCacheMagic) || d.u8() != FormatVersion {
		return nil, fmt.Errorf("not a stat cache: %w", ErrCorrupt)
	}
	c := &statCache{}
	c.Snapshot = d.str(maxIDLen, "snapshot")
	c.Source = d.u8()
	c.Taken = d.varint()
	n := d.count(maxNodes, 5, "entry count")
	c.Entries = make(map[string]statEntry, min(n, 1<<16))
	for i := 0; i < n && d.err == nil; i++ {
		p := d.str(1<<16, "path")
		c.Entries[p] = statEntry{Size: d.uvarint(), Mtime: d.varint(), Ctime: d.varint(), Ino: d.uvarint()}
	}
	if err := d.done("stat cache"); err != nil {
		return nil, err
	}
	if c.Source != sourceCreate && c.Source != sourceRestore {
		return nil, fmt.Errorf("stat cache source %q: %w", c.Source, ErrCorrupt)
	}
	return c, nil
}

// loadStatCache returns nil when the cache is absent or unusable: it is
// only an accelerator, and without it files are compared with the parent
// manifest or read again.
func loadStatCache(path string) *statCache {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Size > maxStatCache {
		return nil
	}
	data := make([]byte, st.Size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil
	}
	c, err := decodeStatCache(data)
	if err != nil {
		return nil
	}
	return c
}

func writeStatCache(path string, c *statCache) error {
	if err := durable.WriteFile(path, encodeStatCache(c), 0o600); err != nil {
		return fmt.Errorf("writing stat cache %s: %w", path, err)
	}
	return nil
}

// removeStatCache invalidates the cache before the directory it describes
// changes.
func removeStatCache(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing stat cache %s: %w", path, err)
	}
	return nil
}
