package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/transfer"
	"github.com/zeebo/blake3"
)

// This file is the one place where the garbage collector (package prune)
// learns what the format keeps alive. Prune never decodes a manifest or
// parses a key itself: it lists objects through Objects and asks
// References what each snapshot needs. A new format version extends these
// two functions and prune follows.

// Kind says what a store object of this package is.
type Kind int

// The kinds of objects this package writes (doc.go, "Store layout").
const (
	KindOther    Kind = iota // not one of ours (or a malformed key)
	KindManifest             // snapshots/<volume>/<id>
	KindPack                 // packs/<xx>/<pack-id>
	KindIndex                // index/<volume>/<parent>/<pack-id>
)

// Object is a store object of this package, as Objects lists it.
type Object struct {
	transfer.ObjectInfo
	Kind     Kind
	Volume   string // manifests and indexes
	Snapshot string // manifests: the snapshot ID; indexes: the parent ("initial" for none)
	Pack     string // packs and indexes: the pack's store key
}

// objectPrefixes are the key prefixes under which this package stores
// objects that a garbage collector must consider (the config excepted).
var objectPrefixes = []string{"snapshots/", "packs/", "index/"}

// Classify says which of this package's objects key is.
func Classify(key string) Object {
	o := Object{ObjectInfo: transfer.ObjectInfo{Key: key}}
	parts := strings.Split(key, "/")
	switch {
	case len(parts) == 3 && parts[0] == "snapshots" && volname.Valid(parts[1]) && ValidSnapshotID(parts[2]):
		o.Kind, o.Volume, o.Snapshot = KindManifest, parts[1], parts[2]
	case len(parts) == 3 && parts[0] == "packs":
		if id, err := parseID(parts[2]); err == nil && parts[1] == parts[2][:2] {
			o.Kind, o.Pack = KindPack, packKey(id)
		}
	case len(parts) == 4 && parts[0] == "index" && volname.Valid(parts[1]) &&
		(parts[2] == "initial" || ValidSnapshotID(parts[2])):
		if id, err := parseID(parts[3]); err == nil {
			o.Kind, o.Volume, o.Snapshot, o.Pack = KindIndex, parts[1], parts[2], packKey(id)
		}
	}
	return o
}

// Objects lists every object of the given kind in the store, in key order,
// classified. Objects of unknown shape under the same prefix are skipped.
func Objects(ctx context.Context, store transfer.ObjectStore, kind Kind, fn func(Object) error) error {
	var prefix string
	switch kind {
	case KindManifest:
		prefix = objectPrefixes[0]
	case KindPack:
		prefix = objectPrefixes[1]
	case KindIndex:
		prefix = objectPrefixes[2]
	default:
		return fmt.Errorf("objects of kind %d: %w", kind, ErrInvalid)
	}
	return store.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		o := Classify(oi.Key)
		if o.Kind != kind {
			return nil
		}
		o.ObjectInfo = oi
		return fn(o)
	})
}

// ManifestKey returns the store key of snapshot id of volume.
func ManifestKey(volume, id string) string { return manifestKey(volume, id) }

// Reference is something a snapshot keeps alive: one object, or (Prefix)
// every object whose key starts with Key.
type Reference struct {
	Key    string
	Prefix bool
}

// References calls fn, in this order, with every object snapshot id of
// volume keeps alive: its manifest, each pack it reads from, and the
// prefix of the pack indexes that Creates from it leave (doc.go, "Pack
// indexes"; they make a re-run after an interruption cheap). It reads one
// manifest and decodes only its pack table, so a caller that walks many
// snapshots holds one manifest at a time. A missing snapshot gives
// ErrNotFound, a damaged one ErrCorrupt.
//
// Format version 1: manifest, packs. Format 2: manifest, the packs of its
// list parts, then the packs those parts name (read from the parts,
// streaming: memory follows the number of parts, one per MiB of data).
func (r *Repo) References(ctx context.Context, volume, id string, fn func(Reference) error) error {
	return r.ReferencesAt(ctx, manifestKey(volume, id), volume, id, fn)
}

// ReferencesAt is References for a copy of the manifest of volume/id that
// is stored under another key (the trash keeps removed volumes' manifests
// under trash/…): the copy is authenticated as the original, and the
// references name the original's objects, not the copy.
func (r *Repo) ReferencesAt(ctx context.Context, stored, volume, id string, fn func(Reference) error) error {
	if err := checkVolume(volume); err != nil {
		return err
	}
	if err := checkSnapshotID(id); err != nil {
		return err
	}
	key := manifestKey(volume, id)
	data, err := r.readSmall(ctx, stored, maxManifestSize)
	if errors.Is(err, transfer.ErrNotExist) {
		return fmt.Errorf("volume %q: snapshot %s: %w", volume, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("volume %q: reading manifest %s: %w", volume, stored, err)
	}
	in, packs, err := r.decodePackTable(data, key, volume, id)
	if err != nil {
		return fmt.Errorf("volume %q: manifest %s: %w", volume, stored, err)
	}
	if err := fn(Reference{Key: key}); err != nil {
		return err
	}
	for _, p := range packs {
		if err := fn(Reference{Key: packKey(p)}); err != nil {
			return err
		}
	}
	if in.Version >= 2 {
		// The body's pack table names the packs of the list parts; the
		// chunks' packs are in the parts (doc.go, "List parts").
		if err := r.partPacks(ctx, data, key, packs, fn); err != nil {
			return fmt.Errorf("volume %q: snapshot %s: %w", volume, id, err)
		}
	}
	return fn(Reference{Key: indexPrefix(volume, id), Prefix: true})
}

// partPacks calls fn with every pack that the list parts of a format 2
// manifest name and that is not in seen, once each, streaming the parts:
// it holds the tree and the part references, never all chunk references.
func (r *Repo) partPacks(ctx context.Context, data []byte, key string, seen []ID, fn func(Reference) error) error {
	m, err := decodeManifest(data, key, r.crypt)
	if err != nil {
		return err
	}
	named := make(map[ID]bool, len(seen))
	for _, p := range seen {
		named[p] = true
	}
	var mu sync.Mutex
	return r.forEachPart(ctx, m, nil, func(i int, plain []byte, s *partScratch) error {
		p := &m.parts[i]
		packs, _, err := s.decode(plain, m.BlockSize, m.Nodes[p.Node].Size, p.Span)
		if err != nil {
			return fmt.Errorf("list part %s: %w", p.ID, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, pk := range packs {
			if !named[pk] {
				named[pk] = true
				if err := fn(Reference{Key: packKey(pk)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// decodePackTable authenticates a stored manifest and returns its pack
// table, decompressing no more of the body than the table needs.
func (r *Repo) decodePackTable(data []byte, key, volume, id string) (Info, []ID, error) {
	in, head, end, _, err := decodeManifestHeader(data, key, r.crypt)
	if err != nil {
		return in, nil, err
	}
	if in.ID != id || in.Volume != volume {
		return in, nil, fmt.Errorf("it describes %s of volume %q: %w", in.ID, in.Volume, ErrCorrupt)
	}
	hsum := blake3.Sum256(head)
	zbody, err := r.crypt.open(nil, data[end:], manifestAD(byte(in.Version), 'b', key, hsum[:]))
	if err != nil {
		return in, nil, fmt.Errorf("manifest body: %w", err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(zbody), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifestSize), zstd.WithDecoderLowmem(true))
	if err != nil {
		return in, nil, fmt.Errorf("manifest body: %w", ErrCorrupt)
	}
	defer zr.Close()
	br := bufio.NewReader(zr)
	np, err := binary.ReadUvarint(br)
	if err != nil || np > maxPacks {
		return in, nil, fmt.Errorf("manifest body: bad pack count: %w", ErrCorrupt)
	}
	// Grow with what really decompresses, never by the claim alone.
	packs := make([]ID, 0, min(np, 1024))
	for range np {
		var p ID
		if _, err := io.ReadFull(br, p[:]); err != nil {
			return in, nil, fmt.Errorf("manifest body: truncated pack table: %w", ErrCorrupt)
		}
		packs = append(packs, p)
	}
	return in, packs, nil
}

// Forget deletes the manifest of snapshot id of volume: the snapshot is no
// longer listed, and the objects only it referenced become garbage for a
// later prune. The caller decides what may be forgotten (never a volume's
// head). Forgetting a snapshot that is gone already is not an error.
func (r *Repo) Forget(ctx context.Context, volume, id string) error {
	if err := checkVolume(volume); err != nil {
		return err
	}
	if err := checkSnapshotID(id); err != nil {
		return err
	}
	if err := r.store.Delete(ctx, manifestKey(volume, id)); err != nil {
		return fmt.Errorf("volume %q: forgetting snapshot %s: %w", volume, id, err)
	}
	return nil
}
