package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// LocalState says what this host holds of a volume's data.
type LocalState string

// Local states: the phase of the driver's state machine (driver/doc.go).
// Readers must treat unknown values as "not usable".
const (
	// LocalAbsent: this host has no copy (the volume was made elsewhere).
	LocalAbsent LocalState = "absent"
	// LocalRestoring: a restore into the data directory is running; the
	// directory still holds LocalSnapshot until the restore swaps it.
	LocalRestoring LocalState = "restoring"
	// LocalReady: the data directory holds LocalSnapshot (plus unpublished
	// changes if Dirty).
	LocalReady LocalState = "ready"
	// LocalMounted: bind-mounted for containers; changes are unpublished.
	LocalMounted LocalState = "mounted"
	// LocalReleasing: unmounted; the final snapshot and the release of the
	// lease are pending.
	LocalReleasing LocalState = "releasing"
	// LocalDiverged: this host lost the lease (fenced); its copy was moved
	// aside (see Aside) and the next Mount restores the store's head.
	LocalDiverged LocalState = "diverged"
	// LocalPresent is what single-host releases wrote for LocalReady.
	LocalPresent LocalState = "present"
	// LocalMissing: the record says there was a copy but the data
	// directory is gone.
	LocalMissing LocalState = "missing"
)

// Volume is one volume's record. Options hold no secrets: the driver stores
// only normalised, non-secret option values.
type Volume struct {
	Name      string            `json:"name"`
	Options   map[string]string `json:"options"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by"` // host id
	Local     LocalState        `json:"local"`
	// SizeBytes is the sum of the sizes of the files in the data directory,
	// measured at SizeAt (zero time: never measured).
	SizeBytes int64     `json:"size_bytes"`
	SizeAt    time.Time `json:"size_at"`
	// UsedBytes is the disk space the local copy takes (allocated blocks,
	// or the btrfs quota group's referenced bytes), measured at SizeAt.
	UsedBytes int64 `json:"used_bytes,omitempty"`

	// Filesystem is where the local copy lives: "btrfs" (a subvolume) or
	// "directory"; "" is a directory (records from before subvolumes).
	Filesystem string `json:"filesystem,omitempty"`
	// BaseSnapshot is the published snapshot whose frozen instant the
	// local copies keep as the base of the next snapshot; BaseInstant and
	// BaseGeneration identify that instant (localcopy.Frozen's ID and
	// Generation). The base is trusted only when the kept instant matches
	// both (a crash between keeping and recording makes it unusable).
	BaseSnapshot   string `json:"base_snapshot,omitempty"`
	BaseInstant    string `json:"base_instant,omitempty"`
	BaseGeneration uint64 `json:"base_generation,omitempty"`

	// Incarnation identifies which creation of this name in the store the
	// local copy belongs to (the store record's creation time and host).
	Incarnation string `json:"incarnation,omitempty"`
	// LocalSnapshot is the published snapshot the data directory was last
	// made equal to (restored from or snapshotted to); "" for none.
	LocalSnapshot string `json:"local_snapshot,omitempty"`
	// ConfirmedAt is when a periodic or final snapshot last found the data
	// unchanged since LocalSnapshot and so published nothing: the head is
	// current as of then (its age alone would overstate the RPO).
	ConfirmedAt time.Time `json:"confirmed_at,omitempty"`
	// Dirty: the data directory may hold changes no published snapshot has
	// (it was mounted, or adopted, since LocalSnapshot).
	Dirty bool `json:"dirty,omitempty"`
	// Generation is the lease generation this host holds on the volume, 0
	// for none; it is written right after acquiring, so a restarted host can
	// resume its lease.
	Generation uint64 `json:"generation,omitempty"`
	// Aside lists copies moved out of the way (fenced or conflicting
	// copies), as paths relative to the state directory. They are never
	// deleted by portvol.
	Aside []string `json:"aside,omitempty"`
	// LastError is the last failure of background work on the volume, for
	// status output; "" once it succeeds again.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitempty"`
	// TakenOver says what the last takeover of the volume by this host
	// lost, for status output.
	TakenOver string `json:"taken_over,omitempty"`
}

// CreateVolume stores a new record; it fails with ErrExists if the name is
// taken.
func (db *DB) CreateVolume(ctx context.Context, v Volume) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("volume %q: encode record: %w", v.Name, err)
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		if b.Get([]byte(v.Name)) != nil {
			return fmt.Errorf("volume %q: %w", v.Name, ErrExists)
		}
		return b.Put([]byte(v.Name), data)
	})
}

// Volume returns the record for name, or an error wrapping ErrNotFound.
func (db *DB) Volume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := db.view(ctx, func(tx *bolt.Tx) error {
		var err error
		v, err = getVolume(tx, name)
		return err
	})
	return v, err
}

// Volumes returns every record, sorted by name.
func (db *DB) Volumes(ctx context.Context) ([]Volume, error) {
	var out []Volume
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVolumes).ForEach(func(k, data []byte) error {
			var v Volume
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("volume %q: decode record: %w", k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// UpdateVolume applies fn to the record for name and stores the result, in
// one transaction. fn must not do I/O; its error aborts the update. The name
// cannot be changed.
func (db *DB) UpdateVolume(ctx context.Context, name string, fn func(*Volume) error) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		v, err := getVolume(tx, name)
		if err != nil {
			return err
		}
		if err := fn(&v); err != nil {
			return err
		}
		v.Name = name
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("volume %q: encode record: %w", name, err)
		}
		return tx.Bucket(bucketVolumes).Put([]byte(name), data)
	})
}

// DeleteVolume removes the record for name together with its mount counts.
// It fails with ErrNotFound if there is no record. Whether the volume may be
// deleted (no mounts) is the caller's decision.
func (db *DB) DeleteVolume(ctx context.Context, name string) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVolumes)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("volume %q: %w", name, ErrNotFound)
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		return deleteMounts(tx, name)
	})
}

func getVolume(tx *bolt.Tx, name string) (Volume, error) {
	var v Volume
	data := tx.Bucket(bucketVolumes).Get([]byte(name))
	if data == nil {
		return v, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("volume %q: decode record: %w", name, err)
	}
	return v, nil
}
