package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"github.com/portvol/portvol/internal/volname"
)

// ID is a 32-byte content identifier (a chunk or a pack).
type ID [32]byte

// String returns the lower-case hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

func parseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("%q is not a 64-digit hex id: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%q is not a 64-digit hex id: %w", s, ErrInvalid)
	}
	return id, nil
}

var (
	snapshotRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{16}$`)
)

// ValidSnapshotID reports whether id has the form of a snapshot ID
// (20060102T150405Z-0123456789abcdef).
func ValidSnapshotID(id string) bool { return snapshotRE.MatchString(id) }

func checkVolume(name string) error {
	if err := volname.Check(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func checkSnapshotID(id string) error {
	if !ValidSnapshotID(id) {
		return fmt.Errorf("snapshot id %q: not of the form 20060102T150405Z-0123456789abcdef: %w", id, ErrInvalid)
	}
	return nil
}

// newSnapshotID returns a time-ordered, random snapshot ID.
func newSnapshotID(t time.Time) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Store keys. See doc.go for the layout.
const configKey = "config"

func snapshotsPrefix(volume string) string { return "snapshots/" + volume + "/" }

func manifestKey(volume, id string) string { return snapshotsPrefix(volume) + id }

func packKey(id ID) string { s := id.String(); return "packs/" + s[:2] + "/" + s }

// indexPrefix holds the pack indexes written by Create runs whose parent
// is parent ("" for a first snapshot).
func indexPrefix(volume, parent string) string {
	if parent == "" {
		parent = "initial"
	}
	return "index/" + volume + "/" + parent + "/"
}

// VolumePrefixes returns the key prefixes under which this package keeps
// a volume's own objects (manifests and pack indexes), for callers that
// move a removed volume to the trash. Packs are shared between volumes
// and are not included.
func VolumePrefixes(volume string) []string {
	return []string{snapshotsPrefix(volume), "index/" + volume + "/"}
}

// IDTime returns the UTC start time encoded in a snapshot ID, for showing
// a snapshot's age without reading it.
func IDTime(id string) (time.Time, bool) {
	if !ValidSnapshotID(id) {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", id[:16])
	return t, err == nil
}
