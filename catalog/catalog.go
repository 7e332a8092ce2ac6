package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/transfer"
)

// RecordVersion is the version of the record format this package writes.
const RecordVersion = 1

// maxRecord bounds a record read from the store: options are a handful of
// short strings, so anything bigger is not ours.
const maxRecord = 64 << 10

// Prefix is where volume records live in the store.
const Prefix = "volumes/"

const recordName = "volume.json"

var (
	// ErrNotFound: the store has no record of that volume.
	ErrNotFound = errors.New("no such volume")
	// ErrCorrupt: a record exists but cannot be decoded.
	ErrCorrupt = errors.New("corrupt volume record")
)

// Volume is a volume's record.
type Volume struct {
	Version   int               `json:"version"`
	Name      string            `json:"name"`
	Options   map[string]string `json:"options"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by"`
}

// Key returns the store key of volume name's record.
func Key(name string) string { return Prefix + name + "/" + recordName }

// Encode returns the record's bytes.
func Encode(v Volume) ([]byte, error) {
	if err := v.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Decode parses a record strictly: unknown fields, a newer version, a bad
// name or trailing data are errors matching ErrCorrupt.
func Decode(data []byte) (Volume, error) {
	if len(data) > maxRecord {
		return Volume{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrCorrupt, len(data), maxRecord)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v Volume
	if err := dec.Decode(&v); err != nil {
		return Volume{}, fmt.Errorf("%w: %s", ErrCorrupt, err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return Volume{}, fmt.Errorf("%w: data after the record", ErrCorrupt)
	}
	if v.Version > RecordVersion {
		return Volume{}, fmt.Errorf("%w: record version %d is newer than this portvol understands (%d): upgrade portvol", ErrCorrupt, v.Version, RecordVersion)
	}
	if err := v.validate(); err != nil {
		return Volume{}, fmt.Errorf("%w: %s", ErrCorrupt, err.Error())
	}
	return v, nil
}

func (v Volume) validate() error {
	if v.Version != RecordVersion {
		return fmt.Errorf("record version %d, want %d", v.Version, RecordVersion)
	}
	if err := volname.Check(v.Name); err != nil {
		return err
	}
	if len(v.Options) > 64 {
		return fmt.Errorf("volume %q: %d options, at most 64", v.Name, len(v.Options))
	}
	for k, val := range v.Options {
		if k == "" || len(k) > 64 || len(val) > 1024 {
			return fmt.Errorf("volume %q: option %.64q has a bad name or a value over 1024 bytes", v.Name, k)
		}
	}
	return nil
}

// Create writes v's record unless the volume exists. It returns the record
// that is in the store afterwards and whether this call created it; when the
// volume existed, the caller compares the options.
func Create(ctx context.Context, store transfer.ObjectStore, v Volume) (Volume, bool, error) {
	v.Version = RecordVersion
	data, err := Encode(v)
	if err != nil {
		return Volume{}, false, err
	}
	_, err = store.PutIfAbsent(ctx, Key(v.Name), data)
	switch {
	case err == nil:
		return v, true, nil
	case !errors.Is(err, transfer.ErrPrecondition):
		return Volume{}, false, fmt.Errorf("volume %q: create record: %w", v.Name, err)
	}
	have, err := Get(ctx, store, v.Name)
	if err != nil {
		return Volume{}, false, err
	}
	// A retried create whose first attempt was applied finds its own bytes.
	haveData, _ := Encode(have)
	return have, bytes.Equal(haveData, data), nil
}

// Get reads volume name's record.
func Get(ctx context.Context, store transfer.ObjectStore, name string) (Volume, error) {
	if err := volname.Check(name); err != nil {
		return Volume{}, err
	}
	data, _, err := store.Load(ctx, Key(name), maxRecord)
	if errors.Is(err, transfer.ErrNotExist) {
		return Volume{}, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	if errors.Is(err, transfer.ErrTooLarge) {
		return Volume{}, fmt.Errorf("volume %q: %w: %w", name, ErrCorrupt, err)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("volume %q: read record: %w", name, err)
	}
	v, err := Decode(data)
	if err != nil {
		return Volume{}, fmt.Errorf("volume %q: %w", name, err)
	}
	if v.Name != name {
		return Volume{}, fmt.Errorf("volume %q: %w: the record names volume %q", name, ErrCorrupt, v.Name)
	}
	return v, nil
}

// Names lists the volumes that have a record, sorted.
func Names(ctx context.Context, store transfer.ObjectStore) ([]string, error) {
	var names []string
	err := store.List(ctx, Prefix, func(o transfer.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, Prefix)
		name, file, ok := strings.Cut(rest, "/")
		if ok && file == recordName && volname.Check(name) == nil {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	sort.Strings(names)
	return names, nil
}
