package transfertest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/portvol/portvol/transfer"
)

// testList writes 2,500 keys (more than two S3 listing pages) plus keys
// whose order depends on bytes sorting before and after '/'.
func testList(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	var keys []string
	for i := range 2500 {
		keys = append(keys, fmt.Sprintf("ls/k%05d", i))
	}
	tricky := []string{"ls/a-c", "ls/a/b", "ls/a.b", "ls/a0", "ls/a_", "ls/A", "ls/b/c/d", "ls/b/c-d"}
	keys = append(keys, tricky...)
	keys = append(keys, "lt/outside", "l/outside")

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, k := range keys {
		g.Go(func() error { return s.Put(gctx, k, strings.NewReader(k), int64(len(k))) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("writing %d keys: %v", len(keys), err)
	}

	want := slices.Clone(keys[:len(keys)-2])
	slices.Sort(want)
	check := func(prefix string, want []string) {
		t.Helper()
		got := listKeys(t, s, prefix)
		var gotKeys []string
		for _, oi := range got {
			gotKeys = append(gotKeys, oi.Key)
			if oi.Size != int64(len(oi.Key)) || oi.ETag == "" {
				t.Fatalf("List(%q): %+v, want size %d and an ETag", prefix, oi, len(oi.Key))
			}
		}
		if !slices.Equal(gotKeys, want) {
			t.Fatalf("List(%q) returned %d keys, want %d in lexical order\nfirst got:  %q\nfirst want: %q",
				prefix, len(gotKeys), len(want), head(gotKeys), head(want))
		}
	}
	check("ls/", want)
	check("ls", want)
	check("ls/a", []string{"ls/a-c", "ls/a.b", "ls/a/b", "ls/a0", "ls/a_"})
	check("ls/a/", []string{"ls/a/b"})
	check("ls/b/c", []string{"ls/b/c-d", "ls/b/c/d"})
	check("ls/k0012", []string{"ls/k00120", "ls/k00121", "ls/k00122", "ls/k00123", "ls/k00124",
		"ls/k00125", "ls/k00126", "ls/k00127", "ls/k00128", "ls/k00129"})
	check("ls/k02499", []string{"ls/k02499"})
	check("ls/zzz", nil)
	check("nothing/", nil)

	// Stopping past the first page returns fn's error and calls fn no more.
	stop := errors.New("stop here")
	calls := 0
	err := s.List(ctx, "ls/k", func(transfer.ObjectInfo) error {
		calls++
		if calls == 1001 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 1001 {
		t.Fatalf("List stopped by fn after 1001 keys: error %v after %d calls, want fn's error after 1001", err, calls)
	}
}

func testListStops(t *testing.T, s transfer.ObjectStore) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("st/%d", i), []byte{byte(i)})
	}
	stop := errors.New("enough")
	var seen []string
	err := s.List(ctxFor(t), "st/", func(oi transfer.ObjectInfo) error {
		seen = append(seen, oi.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(seen, []string{"st/0", "st/1"}) {
		t.Fatalf("List stopped after two keys: error %v, saw %q", err, seen)
	}
}

func head(s []string) []string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
