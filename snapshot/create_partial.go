package snapshot

import (
	"context"
	"fmt"
)

// partialParent is a Create's parent snapshot with only some of its list
// parts loaded (a ChangeSource says what changed): the parts of the spans
// that changed, and every part of a file it cannot account for span by
// span. The other parts are kept by reference, neither fetched nor
// encoded again, so a snapshot of a small change costs the change, not
// the volume. Chunks of the parts not loaded are not in the registry:
// new data equal to one of them is stored again (a harmless duplicate).
type partialParent struct {
	// reuse lists, per node of the new tree, the indexes of the parent's
	// parts it keeps, in span order; its Blocks hold the other spans.
	reuse map[int32][]int
	// loadedBytes is the data of the parent's blocks that were loaded;
	// the rest of the parent's data bytes is in the parts kept.
	loadedBytes uint64
}

// load decides, from the ChangeSource's answers (per node of t), which
// parts of parent to load, loads them, and records what each file keeps.
func (pp *partialParent) load(ctx context.Context, r *Repo, t *tree, parent *Manifest, byPath map[string]int32, answers []FileChanges) error {
	// The parts of each parent node (stored in node order).
	first := make([]int32, len(parent.Nodes)+1)
	for _, p := range parent.parts {
		first[p.Node+1]++
	}
	for i := range parent.Nodes {
		first[i+1] += first[i]
	}
	// A parent file matched by exactly one new file can be kept span by
	// span; one matched twice (hardlinks) is loaded whole.
	matched := make([]int32, len(parent.Nodes))
	for i := range t.nodes {
		if t.nodes[i].Type != TypeFile {
			continue
		}
		if pi, ok := byPath[t.paths[i]]; ok {
			matched[pi]++
		}
	}
	want := make([]bool, len(parent.parts))
	for i := range want {
		want[i] = true
	}
	pp.reuse = map[int32][]int{}
	for i := range t.nodes {
		pi, ok := byPath[t.paths[i]]
		if !ok || t.nodes[i].Type != TypeFile || matched[pi] != 1 {
			continue
		}
		fc, pn, size := answers[i], &parent.Nodes[pi], t.stat[i].Size
		var only [][2]uint64
		switch {
		case fc.Unchanged && pn.Size == size:
			only = [][2]uint64{} // nothing changed
		case !fc.Unchanged && fc.Ranges != nil:
			only = blockRanges(fc.Ranges, size, pn.Size, r.blockSize)
		default:
			continue // read whole: its parent blocks are loaded to deduplicate
		}
		nb := numBlocks(size, r.blockSize)
		var keep []int
		k := 0
		for j := first[pi]; j < first[pi+1]; j++ {
			s := parent.parts[j].Span
			lo, hi := s*partFanout, (s+1)*partFanout-1
			for k < len(only) && only[k][1] < lo {
				k++
			}
			if lo < nb && (k == len(only) || only[k][0] > hi) {
				keep = append(keep, int(j))
				want[j] = false
			}
		}
		if keep != nil {
			pp.reuse[int32(i)] = keep
		}
	}
	if err := r.loadSomeParts(ctx, parent, want); err != nil {
		return fmt.Errorf("parent snapshot %s: %w", parent.ID, err)
	}
	for i := range parent.Nodes {
		for _, b := range parent.Nodes[i].Blocks {
			pp.loadedBytes += uint64(parent.Chunks[b.Chunk].RawLength)
		}
	}
	return nil
}

// keptParts are the parent's parts node i keeps (nil without pp).
func (pp *partialParent) keptParts(i int) []int {
	if pp == nil {
		return nil
	}
	return pp.reuse[int32(i)]
}
