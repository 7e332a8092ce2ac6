package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/zeebo/blake3"
)

// partLoc is where a list part is stored.
type partLoc struct {
	pack           ID
	offset, length uint32
}

// writeParts cuts every file's block list into list parts (doc.go, "List
// parts"), stores the ones the store does not hold yet in packs of their
// own, and sets m.parts. A part equal to one of the parent's, or one left
// by an interrupted run from the same parent, is referenced, not stored.
func (r *Repo) writeParts(ctx context.Context, m *Manifest, parent *Manifest, pp *partialParent, reg *registry, ixPrefix string, prog *progress) error {
	known := reg.parts
	if parent != nil {
		for _, p := range parent.parts {
			known[p.ID] = partLoc{parent.Packs[p.Pack], p.Offset, p.Length}
		}
	}
	packIdx := make(map[ID]uint32, len(m.Packs))
	for i, p := range m.Packs {
		packIdx[p] = uint32(i)
	}
	h := r.crypt.newHasher()
	buf := reg.spare // the part pack being filled
	if cap(buf) < r.packSize+partMaxSize(m.BlockSize)+sealOverhead+sumSize {
		buf = make([]byte, 0, r.packSize+partMaxSize(m.BlockSize)+sealOverhead+sumSize)
	}
	reg.spare = nil
	var entries []Chunk     // its index
	var pending []int       // m.parts entries that point into buf
	flush := func() error { // store buf; point pending at it
		if len(buf) == 0 {
			return nil
		}
		id := ID(blake3.Sum256(buf))
		if err := r.putPack(ctx, id, buf, entries, true, ixPrefix, nil); err != nil {
			return err
		}
		m.Stats.UploadedBytes += uint64(len(buf))
		prog.transferred.Add(uint64(len(buf)))
		pi := uint32(len(m.Packs))
		m.Packs = append(m.Packs, id)
		packIdx[id] = pi
		for _, i := range pending {
			m.parts[i].Pack = pi
			p := m.parts[i]
			known[p.ID] = partLoc{id, p.Offset, p.Length}
		}
		buf, entries, pending = buf[:0], entries[:0], pending[:0]
		return nil
	}
	refer := func(p partRef, loc partLoc) {
		pi, ok := packIdx[loc.pack]
		if !ok {
			pi = uint32(len(m.Packs))
			m.Packs = append(m.Packs, loc.pack)
			packIdx[loc.pack] = pi
		}
		p.Pack, p.Offset, p.Length = pi, loc.offset, loc.length
		m.parts = append(m.parts, p)
	}
	inBuf := make(map[ID]int) // parts stored in buf: index into m.parts
	var e enc
	for i := range m.Nodes {
		n := &m.Nodes[i]
		if n.Type != TypeFile {
			continue
		}
		// The parent's parts this file keeps unread, merged in span order.
		kept := pp.keptParts(i)
		keepBelow := func(span uint64) {
			for ; len(kept) > 0 && parent.parts[kept[0]].Span < span; kept = kept[1:] {
				q := &parent.parts[kept[0]]
				refer(partRef{Node: int32(i), Span: q.Span, ID: q.ID}, partLoc{parent.Packs[q.Pack], q.Offset, q.Length})
			}
		}
		for lo := 0; lo < len(n.Blocks); {
			span := n.Blocks[lo].Index / partFanout
			keepBelow(span)
			hi := lo + 1
			for hi < len(n.Blocks) && n.Blocks[hi].Index/partFanout == span {
				hi++
			}
			e.b = e.b[:0]
			encodePart(&e, m, n.Blocks[lo:hi], span)
			lo = hi
			id := sumID(h, e.b)
			p := partRef{Node: int32(i), Span: span, ID: id}
			if loc, ok := known[id]; ok {
				refer(p, loc)
				continue
			}
			if j, ok := inBuf[id]; ok {
				p.Offset, p.Length = m.parts[j].Offset, m.parts[j].Length
				pending = append(pending, len(m.parts))
				m.parts = append(m.parts, p)
				continue
			}
			off := len(buf)
			buf = r.crypt.sealChunk(buf, e.b, id[:])
			p.Offset, p.Length = uint32(off), uint32(len(buf)-off)
			entries = append(entries, Chunk{ID: id, Offset: p.Offset, Length: p.Length, RawLength: uint32(len(e.b))})
			inBuf[id] = len(m.parts)
			pending = append(pending, len(m.parts))
			m.parts = append(m.parts, p)
			if len(buf) >= r.packSize {
				if err := flush(); err != nil {
					return err
				}
				clear(inBuf)
			}
		}
		keepBelow(^uint64(0))
	}
	return flush()
}

// putPack stores a pack and then its index; id is the BLAKE3 of the
// pack's bytes. scratch, if not nil, lends its buffers for the index.
func (r *Repo) putPack(ctx context.Context, id ID, buf []byte, chunks []Chunk, parts bool, ixPrefix string, scratch *indexScratch) error {
	key := packKey(id)
	if err := r.store.Put(ctx, key, bytes.NewReader(buf), int64(len(buf))); err != nil {
		return fmt.Errorf("uploading pack %s: %w", key, err)
	}
	ixKey := ixPrefix + id.String()
	if scratch == nil {
		scratch = &indexScratch{}
	}
	ix := scratch.encode(&packIndex{Pack: id, Size: uint64(len(buf)), Chunks: chunks, Parts: parts}, ixKey, r.crypt)
	if err := r.store.Put(ctx, ixKey, bytes.NewReader(ix), int64(len(ix))); err != nil {
		return fmt.Errorf("uploading pack index %s: %w", ixKey, err)
	}
	return nil
}

// sameSnapshot reports whether m restores to exactly what parent
// restores to: the same nodes with the same metadata and content. The
// writer's ctimes and inode numbers do not count.
func sameSnapshot(m, parent *Manifest) bool {
	if len(m.Nodes) != len(parent.Nodes) {
		return false
	}
	for i := range m.Nodes {
		a, b := &m.Nodes[i], &parent.Nodes[i]
		if a.Parent != b.Parent || a.Name != b.Name || a.Type != b.Type || a.Mode != b.Mode || a.UID != b.UID ||
			a.GID != b.GID || a.Mtime != b.Mtime || a.Size != b.Size || a.Target != b.Target || a.Link != b.Link ||
			a.Rdev != b.Rdev || !xattrsEqual(a.Xattrs, b.Xattrs) || len(a.Blocks) != len(b.Blocks) {
			return false
		}
		if !slices.EqualFunc(a.Blocks, b.Blocks, func(x, y BlockRef) bool {
			return x.Index == y.Index && m.Chunks[x.Chunk].ID == parent.Chunks[y.Chunk].ID
		}) {
			return false
		}
	}
	return true
}
