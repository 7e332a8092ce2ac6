package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer/localdir"
)

// Ids of the two forged manifests TestManifestMemoryFollowsStoredBytes
// plants.
const (
	bombID    = "20260801T120000Z-00000000000000b0"
	countedID = "20260801T120000Z-00000000000000b1"
	paddedID  = "20260801T120000Z-00000000000000b2"
)

// A manifest's decoded size is bounded by its stored size, so memory
// follows the bytes in the store, not the counts a manifest claims: 4 Mi
// FIFOs that compress into 1 MB (which made verify use 2.9 GB) are refused
// once the body is decompressed, before a node is allocated, and a forged
// manifest that stays within
// the limits (one node per stored byte, padded with incompressible
// xattrs) costs at most ~256 bytes of memory per stored byte. Measured
// as peak RSS of a process of its own.
func TestManifestMemoryFollowsStoredBytes(t *testing.T) {
	if os.Getenv("PORTVOL_MANIFEST_RSS_CHILD") != "" {
		manifestRSSChild(t)
		return
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	store, err := localdir.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := openTestRepo(t, store, nil)
	plant := func(id string, nodes int, pad int) int {
		in := validManifest().Info
		in.ID, in.Volume = id, "v"
		data, _, _, err := sealBody(&in, fifoBody(nodes, pad), manifestKey("v", id), r.crypt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutIfAbsent(ctx, manifestKey("v", id), data); err != nil {
			t.Fatal(err)
		}
		return len(data)
	}
	bombSize := plant(bombID, 4<<20, 0)
	// Padded to decompress less than 32 times: refused for its node count.
	countedSize := plant(countedID, 4<<20, 5<<18)
	paddedSize := plant(paddedID, 1<<20, 1<<20)
	t.Logf("forged manifests: 4 Mi FIFOs in %d stored bytes, and in %d with 1.25 MiB of xattrs; 1 Mi FIFOs with 1 MiB of xattrs in %d", bombSize, countedSize, paddedSize)

	cmd := exec.Command(os.Args[0], "-test.run=^TestManifestMemoryFollowsStoredBytes$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PORTVOL_MANIFEST_RSS_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	peak := func(what string) int64 {
		m := regexp.MustCompile(`(?m)^peak ` + what + ` (\d+)(.*)$`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("child output lacks the %s measurement:\n%s", what, out)
		}
		kb, _ := strconv.ParseInt(m[1], 10, 64)
		t.Logf("%s: peak RSS %d MB; %s", what, kb*1024/1e6, m[2])
		return kb << 10
	}
	base := peak("base")
	for what, size := range map[string]int{"bomb": bombSize, "counted": countedSize} {
		if grew := peak(what) - base; grew > 64*int64(size) {
			t.Errorf("verifying the 4 Mi FIFO manifest of %d bytes grew RSS by %d MB, more than 64 bytes per stored byte", size, grew>>20)
		}
	}
	if grew := peak("padded") - base; grew > 256*int64(paddedSize) {
		t.Errorf("loading a %d-byte manifest grew RSS by %d MB, more than 256 bytes per stored byte", paddedSize, grew>>20)
	}
}

// fifoBody encodes a manifest body of a root directory carrying pad bytes
// of random xattrs and nodes-1 FIFOs in it, straight into bytes (building
// the nodes would cost the parent what the test measures in the child).
func fifoBody(nodes, pad int) []byte {
	var e enc
	e.uvarint(0) // packs
	e.uvarint(0) // chunks
	e.uvarint(uint64(nodes))
	e.u8(byte(TypeDir))
	e.uvarints(0o755, 0, 0)
	e.varint(0)
	e.varint(0)
	e.uvarint(0)
	e.uvarint(uint64((pad + 64<<10 - 1) / (64 << 10)))
	for p := 0; p < pad; p += 64 << 10 {
		e.str("user.pad" + strconv.Itoa(p))
		e.bytes(randBytes(64 << 10))
	}
	for i := 1; i < nodes; i++ {
		e.uvarint(0)
		e.str(strconv.Itoa(i))
		e.u8(byte(TypeFIFO))
		e.uvarints(0o644, 0, 0)
		e.varint(0)
		e.varint(0)
		e.uvarint(0)
		e.uvarint(0)
	}
	return e.b
}

func manifestRSSChild(t *testing.T) {
	ctx := context.Background()
	store, err := localdir.Open(os.Getenv("PORTVOL_MANIFEST_RSS_CHILD"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	resetPeak(t)
	fmt.Printf("peak base %d\n", peakKB(t))
	for what, c := range map[string]struct{ id, why string }{
		"bomb":    {bombID, "more than 32 times"},
		"counted": {countedID, "node count 4194304 exceeds"},
	} {
		resetPeak(t)
		err = r.Verify(ctx, "v", c.id)
		fmt.Printf("peak %s %d %v\n", what, peakKB(t), err)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("Verify of the FIFO manifest %s: %v; want ErrCorrupt saying %q", c.id, err, c.why)
		}
	}
	resetPeak(t)
	m, err := r.Load(ctx, "v", paddedID)
	if err != nil {
		t.Fatalf("Load of the padded manifest: %v", err)
	}
	fmt.Printf("peak padded %d %d nodes\n", peakKB(t), len(m.Nodes))
}
