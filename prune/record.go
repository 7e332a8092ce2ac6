package prune

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// RecordVersion is the collection record format this package writes.
const RecordVersion = 1

const (
	collectionsPrefix = "prune/collections/"
	clockPrefix       = "prune/clock/"
	// maxRecord bounds a collection record read from the store: 1 Mi
	// packs with their indexes fit.
	maxRecord = 256 << 20
)

var (
	// ErrCorrupt: a collection record cannot be decoded. Prune neither
	// sweeps nor trusts it; delete it after looking at it.
	ErrCorrupt = errors.New("corrupt collection record")
	// ErrVersion: a record was written by a newer portvol. Writers and
	// prunes stop rather than guess what it protects: upgrade portvol.
	ErrVersion = errors.New("collection record of a newer format: upgrade portvol")
)

// collection is step one's record: the candidates for deletion, with the
// pack indexes that go with them (doc.go).
type collection struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"` // the pruner's wall clock; for people only
	Bytes   int64     `json:"bytes"`   // total size of the packs listed
	Packs   []string  `json:"packs"`
	Indexes []string  `json:"indexes"`

	modTime time.Time // the store's ModTime of the record (not stored)
}

func collectionKey(id string) string { return collectionsPrefix + id }

// newRecordID returns a time-ordered random ID: UTC time and 64 random bits.
func newRecordID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func encodeCollection(c *collection) ([]byte, error) {
	c.Version = RecordVersion
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(data) > maxRecord {
		return nil, fmt.Errorf("collection record of %d bytes exceeds %d: prune with a shorter margin more often", len(data), maxRecord)
	}
	return data, nil
}

func decodeCollection(data []byte, key string) (*collection, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.Version > RecordVersion {
		return nil, fmt.Errorf("%s: version %d: %w", key, probe.Version, ErrVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c collection
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", key, ErrCorrupt, err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: %w: data after the record", key, ErrCorrupt)
	}
	if c.Version != RecordVersion || collectionKey(c.ID) != key {
		return nil, fmt.Errorf("%s: %w: version %d, id %q", key, ErrCorrupt, c.Version, c.ID)
	}
	for _, p := range c.Packs {
		if snapshot.Classify(p).Kind != snapshot.KindPack {
			return nil, fmt.Errorf("%s: %w: %q is not a pack", key, ErrCorrupt, p)
		}
	}
	for _, ix := range c.Indexes {
		if snapshot.Classify(ix).Kind != snapshot.KindIndex {
			return nil, fmt.Errorf("%s: %w: %q is not a pack index", key, ErrCorrupt, ix)
		}
	}
	return &c, nil
}

// pending lists and reads the collection records in the store, oldest
// first. Undecodable records are returned in bad (they protect nothing
// and are never swept); a record of a newer version is an error.
func pending(ctx context.Context, store transfer.ObjectStore) (recs []*collection, bad []error, err error) {
	var infos []transfer.ObjectInfo
	err = store.List(ctx, collectionsPrefix, func(oi transfer.ObjectInfo) error {
		if !strings.Contains(strings.TrimPrefix(oi.Key, collectionsPrefix), "/") {
			infos = append(infos, oi)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing collection records: %w", err)
	}
	for _, oi := range infos {
		data, err := readBounded(ctx, store, oi.Key, maxRecord)
		if errors.Is(err, transfer.ErrNotExist) {
			continue // swept meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		c, err := decodeCollection(data, oi.Key)
		if errors.Is(err, ErrVersion) {
			return nil, nil, err
		}
		if err != nil {
			bad = append(bad, err)
			continue
		}
		c.modTime = oi.ModTime
		recs = append(recs, c)
	}
	return recs, bad, nil
}

func readBounded(ctx context.Context, store transfer.ObjectStore, key string, limit int64) ([]byte, error) {
	rc, err := store.Get(ctx, key, 0, limit+1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: over %d bytes: %w", key, limit, ErrCorrupt)
	}
	return data, nil
}

// Fossils returns what snapshot.Options.Fossils needs: the packs listed in
// the store's pending collection records. Every writer of a pruned store
// must use it (doc.go, "The writer's half"). Records are write-once, so
// each is read once per process: a call lists the records and reads only
// those it has not seen.
func Fossils(store transfer.ObjectStore) snapshot.Fossils {
	var (
		mu    sync.Mutex
		cache = map[string][]string{} // record key → its packs
	)
	return func(ctx context.Context) (map[string]bool, error) {
		var keys []string
		err := store.List(ctx, collectionsPrefix, func(oi transfer.ObjectInfo) error {
			if !strings.Contains(strings.TrimPrefix(oi.Key, collectionsPrefix), "/") {
				keys = append(keys, oi.Key)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing collection records: %w", err)
		}
		out := make(map[string]bool)
		seen := make(map[string]bool, len(keys))
		for _, k := range keys {
			seen[k] = true
			mu.Lock()
			packs, ok := cache[k]
			mu.Unlock()
			if !ok {
				data, err := readBounded(ctx, store, k, maxRecord)
				if errors.Is(err, transfer.ErrNotExist) {
					continue // swept meanwhile
				}
				if err != nil {
					return nil, err
				}
				c, err := decodeCollection(data, k)
				switch {
				case errors.Is(err, ErrVersion):
					return nil, err
				case err != nil:
					packs = nil // undecodable: never swept, protects nothing
				default:
					packs = c.Packs
				}
				mu.Lock()
				cache[k] = packs
				mu.Unlock()
			}
			for _, p := range packs {
				out[p] = true
			}
		}
		mu.Lock()
		for k := range cache {
			if !seen[k] {
				delete(cache, k)
			}
		}
		mu.Unlock()
		return out, nil
	}
}

// storeNow returns the store's current time: the ModTime the store gives
// a probe object written now. Pack ages and record ripeness are judged
// against it, so no host's clock is compared with the store's.
func storeNow(ctx context.Context, store transfer.ObjectStore) (time.Time, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := clockPrefix + hex.EncodeToString(b[:])
	if _, err := store.PutIfAbsent(ctx, key, []byte("portvol prune clock probe\n")); err != nil {
		return time.Time{}, fmt.Errorf("writing store clock probe %s: %w", key, err)
	}
	oi, err := store.Stat(ctx, key)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading store clock probe %s: %w", key, err)
	}
	if err := store.Delete(ctx, key); err != nil {
		return time.Time{}, fmt.Errorf("deleting store clock probe %s: %w", key, err)
	}
	if oi.ModTime.IsZero() {
		return time.Time{}, fmt.Errorf("the store reports no modification times (probe %s): prune judges ages by them and cannot run on this store", key)
	}
	return oi.ModTime, nil
}
