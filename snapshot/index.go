package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/portvol/portvol/transfer"
)

// packIndex lists the chunks of one pack. Create writes one per pack
// under indexPrefix(volume, parent), after the pack itself, so that a run
// interrupted before its manifest was written leaves behind packs that the
// next run with the same parent can reuse (doc.go, "Pack indexes").
type packIndex struct {
	Pack   ID
	Size   uint64 // pack object size
	Chunks []Chunk
}

var indexMagic = []byte("PVSI")

const maxIndexSize = 4 << 20

func indexAD(key string) []byte {
	return append(append(append([]byte{}, indexMagic...), FormatVersion), key...)
}

func encodeIndex(ix *packIndex, key string, c *cryptor) []byte {
	var e enc
	e.fixed(ix.Pack[:])
	e.uvarint(ix.Size)
	e.uvarint(uint64(len(ix.Chunks)))
	for _, ch := range ix.Chunks {
		e.fixed(ch.ID[:])
		e.uvarints(uint64(ch.Offset), uint64(ch.Length), uint64(ch.RawLength))
		var flags byte
		if ch.Compressed {
			flags = 1
		}
		e.u8(flags)
	}
	out := append(append([]byte{}, indexMagic...), FormatVersion)
	return c.seal(out, e.b, indexAD(key))
}

func decodeIndex(data []byte, key string, c *cryptor, blockSize int) (*packIndex, error) {
	if len(data) < 5 || string(data[:4]) != string(indexMagic) {
		return nil, fmt.Errorf("not a pack index: %w", ErrCorrupt)
	}
	if data[4] != FormatVersion {
		return nil, fmt.Errorf("pack index version %d (this portvol knows version %d): %w", data[4], FormatVersion, ErrUnsupportedVersion)
	}
	plain, err := c.open(nil, data[5:], indexAD(key))
	if err != nil {
		return nil, err
	}
	return decodeIndexBody(plain, blockSize)
}

func decodeIndexBody(plain []byte, blockSize int) (*packIndex, error) {
	d := dec{b: plain}
	ix := &packIndex{}
	copy(ix.Pack[:], d.fixed(32))
	ix.Size = d.upTo(maxPackObject, "pack size")
	n := d.count(maxIndexSize/37, 37, "chunk count")
	ix.Chunks = make([]Chunk, n)
	for i := range ix.Chunks {
		ch := &ix.Chunks[i]
		copy(ch.ID[:], d.fixed(32))
		ch.Offset = uint32(d.upTo(maxPackObject, "offset"))
		ch.Length = uint32(d.upTo(uint64(blockSize+sealOverhead), "length"))
		ch.RawLength = uint32(d.upTo(uint64(blockSize), "raw length"))
		flags := d.u8()
		ch.Compressed = flags == 1
		if d.err == nil && (flags > 1 || ch.Length == 0 || ch.RawLength == 0 || uint64(ch.Offset)+uint64(ch.Length) > ix.Size) {
			d.fail("chunk %d: bad entry", i)
		}
	}
	if err := d.done("pack index"); err != nil {
		return nil, err
	}
	return ix, nil
}

// loadIndexes reads the pack indexes left under prefix by earlier runs and
// calls fn for each. Unreadable indexes are skipped: they only cost
// deduplication, never correctness, since a chunk found nowhere is
// uploaded again.
func (r *Repo) loadIndexes(ctx context.Context, prefix string, skip map[ID]bool, fn func(*packIndex)) error {
	found, err := r.listIndexes(ctx, prefix)
	if err != nil {
		return err
	}
	return r.readIndexes(ctx, found, skip, fn)
}

// indexObject is a pack index found by listIndexes.
type indexObject struct {
	key  string
	pack ID
}

// listIndexes lists the pack indexes under prefix. It is separate from
// reading them so that Create can list (a walk of the whole bucket on
// some S3 servers) while it loads the parent and scans the tree.
func (r *Repo) listIndexes(ctx context.Context, prefix string) ([]indexObject, error) {
	var found []indexObject
	err := r.store.List(ctx, prefix, func(oi transfer.ObjectInfo) error {
		id, err := parseID(strings.TrimPrefix(oi.Key, prefix))
		if err == nil && oi.Size <= maxIndexSize {
			found = append(found, indexObject{oi.Key, id})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing pack indexes %q: %w", prefix, err)
	}
	return found, nil
}

// readIndexes reads the listed indexes of packs not in skip and hands
// each valid one whose pack is in the store, at the size the index
// records, to fn, in the order listed. Damaged indexes, and indexes whose
// pack vanished (an interrupted run's leftovers cleaned up by hand), are
// ignored: their chunks are uploaded again, so a snapshot never refers to
// a pack that is not there. Indexes are read and packs checked
// r.transfers at a time.
func (r *Repo) readIndexes(ctx context.Context, found []indexObject, skip map[ID]bool, fn func(*packIndex)) error {
	var todo []indexObject
	for _, f := range found {
		if !skip[f.pack] {
			todo = append(todo, f)
		}
	}
	got := make([]*packIndex, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.transfers)
	for i := range todo {
		g.Go(func() error {
			ix, err := r.readIndex(gctx, todo[i])
			got[i] = ix
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, ix := range got {
		if ix != nil {
			fn(ix)
		}
	}
	return nil
}

// readIndex reads one leftover index and checks that its pack exists with
// the recorded size. It returns nil, nil for an index that cannot be used.
func (r *Repo) readIndex(ctx context.Context, f indexObject) (*packIndex, error) {
	data, err := r.readSmall(ctx, f.key, maxIndexSize)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, transfer.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ix, err := decodeIndex(data, f.key, r.crypt, r.blockSize)
	if err != nil || ix.Pack != f.pack {
		return nil, nil
	}
	oi, err := r.store.Stat(ctx, packKey(ix.Pack))
	switch {
	case errors.Is(err, transfer.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("checking pack %s of index %s: %w", packKey(ix.Pack), f.key, err)
	case uint64(oi.Size) != ix.Size:
		return nil, nil
	}
	return ix, nil
}

// readSmall reads a whole object of at most limit bytes; a larger one is
// corrupt, and is not read beyond the bound.
func (r *Repo) readSmall(ctx context.Context, key string, limit int64) ([]byte, error) {
	data, err := transfer.ReadAll(ctx, r.store, key, limit)
	if errors.Is(err, transfer.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return data, err
}
