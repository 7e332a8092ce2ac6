package snapshot

import (
	"crypto/rand"
	"testing"
)

// The chunk index finds every ID put in it, and no other, across growth
// and IDs that share their first 8 bytes.
func TestChunkIndex(t *testing.T) {
	var chunks []Chunk
	x := newChunkIndex(0)
	for i := range 5000 {
		var id ID
		rand.Read(id[:])
		if i%10 == 0 && i > 0 {
			copy(id[:8], chunks[i-1].ID[:8]) // same key, other ID
		}
		chunks = append(chunks, Chunk{ID: id})
		x.put(&chunks[i].ID, int32(i))
	}
	for i := range chunks {
		if p, ok := x.get(&chunks[i].ID, chunks); !ok || p != int32(i) {
			t.Fatalf("chunk %d: got %d, %v", i, p, ok)
		}
	}
	var other ID
	rand.Read(other[:])
	if _, ok := x.get(&other, chunks); ok {
		t.Error("found an ID never put")
	}
}
