package lease

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"github.com/portvol/portvol/internal/volname"
)

// RecordVersion is the head record format this package writes and reads.
const RecordVersion = 1

// State is the lifecycle state of a head record.
type State string

// The states of a head record; see the package documentation.
const (
	Held     State = "held"     // Owner holds generation Generation
	Released State = "released" // nobody holds it; the next acquirer gets Generation+1
	Removed  State = "removed"  // tombstone: the volume was removed
)

// Record is the content of volumes/<name>/head.json: the lease and the head
// snapshot in one object, changed only by conditional writes.
type Record struct {
	Version        int       `json:"version"`
	Volume         string    `json:"volume"`
	State          State     `json:"state"`
	Owner          string    `json:"owner"`                     // holder, or last holder once released
	Generation     uint64    `json:"generation"`                // fencing token; +1 at every acquisition
	Head           string    `json:"head,omitempty"`            // last published snapshot ID
	HeadGeneration uint64    `json:"head_generation,omitempty"` // generation that published Head
	Seq            uint64    `json:"seq"`                       // +1 at every write
	Nonce          string    `json:"nonce"`                     // random per write: makes every write unique
	TTLMS          int64     `json:"ttl_ms"`                    // the writer's lease TTL
	Renewed        time.Time `json:"renewed"`                   // writer's wall clock; informational only
	Takeover       *Takeover `json:"takeover,omitempty"`        // set when this generation was taken over
}

// Takeover records that a generation was acquired by taking it from a
// host that still held it. It stays in the record for that generation so
// every host's status can say what was lost.
type Takeover struct {
	From        string `json:"from"`         // the host that held the lease
	Generation  uint64 `json:"generation"`   // the generation it held
	Forced      bool   `json:"forced"`       // taken before it was observed expired
	UnchangedMS int64  `json:"unchanged_ms"` // how long the taker saw it unchanged
}

// Unchanged returns how long the taker saw the old record unchanged.
func (t *Takeover) Unchanged() time.Duration { return time.Duration(t.UnchangedMS) * time.Millisecond }

// TTL returns the lease TTL the record's writer uses.
func (r *Record) TTL() time.Duration { return time.Duration(r.TTLMS) * time.Millisecond }

// maxTTL bounds Options.TTL and a record's ttl_ms.
const maxTTL = 24 * time.Hour

// HeadKey returns the store key of a volume's head record.
func HeadKey(volume string) string { return "volumes/" + volume + "/head.json" }

// maxGeneration keeps generations exact in every JSON reader (2^53).
const maxGeneration = 1 << 53

var (
	hostRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	nonceRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// CheckHost reports whether id is a valid host id.
func CheckHost(id string) error {
	if !hostRE.MatchString(id) {
		return fmt.Errorf("invalid host id %q: use 1-128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit", id)
	}
	return nil
}

// CheckSnapshotID reports whether id can be published as a head snapshot.
// Snapshot IDs are opaque here; the record only needs them to be safe as
// one key segment, which is the rule for volume names.
func CheckSnapshotID(id string) error {
	if !volname.Valid(id) {
		return fmt.Errorf("invalid snapshot id %q: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit", id)
	}
	return nil
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b[:])
}

// validate checks the invariants every stored record satisfies.
func (r *Record) validate() error {
	switch {
	case r.Version != RecordVersion:
		return fmt.Errorf("version %d, want %d", r.Version, RecordVersion)
	case !volname.Valid(r.Volume):
		return fmt.Errorf("bad volume name %q", r.Volume)
	case r.State != Held && r.State != Released && r.State != Removed:
		return fmt.Errorf("unknown state %q (want held, released or removed)", r.State)
	case CheckHost(r.Owner) != nil:
		return fmt.Errorf("bad owner host id %q", r.Owner)
	case r.Generation >= maxGeneration:
		return fmt.Errorf("generation %d out of range", r.Generation)
	case r.State == Held && r.Generation == 0:
		return fmt.Errorf("held record with generation 0")
	case r.Head != "" && CheckSnapshotID(r.Head) != nil:
		return fmt.Errorf("bad head snapshot id %q", r.Head)
	case r.Head == "" && r.HeadGeneration != 0:
		return fmt.Errorf("head_generation %d without a head", r.HeadGeneration)
	case r.Head != "" && (r.HeadGeneration == 0 || r.HeadGeneration > r.Generation):
		return fmt.Errorf("head_generation %d outside 1..%d", r.HeadGeneration, r.Generation)
	case r.Seq == 0 || r.Seq >= maxGeneration:
		return fmt.Errorf("seq %d out of range", r.Seq)
	case !nonceRE.MatchString(r.Nonce):
		return fmt.Errorf("bad nonce %q", r.Nonce)
	case r.TTLMS < 1 || r.TTLMS > maxTTL.Milliseconds():
		return fmt.Errorf("ttl_ms %d outside 1..%d", r.TTLMS, maxTTL.Milliseconds())
	}
	if t := r.Takeover; t != nil {
		switch {
		case CheckHost(t.From) != nil:
			return fmt.Errorf("takeover: bad host id %q", t.From)
		case t.Generation == 0 || t.Generation >= r.Generation:
			return fmt.Errorf("takeover: generation %d not in 1..generation-1 (%d)", t.Generation, r.Generation)
		case t.UnchangedMS < 0:
			return fmt.Errorf("takeover: negative unchanged_ms")
		}
	}
	return nil
}
