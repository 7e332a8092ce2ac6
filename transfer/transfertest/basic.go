package transfertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/portvol/portvol/transfer"
)

func testRoundTrip(t *testing.T, s transfer.ObjectStore) {
	cases := []struct {
		name     string
		size     int
		seekable bool
	}{
		{"empty", 0, true},
		{"1B", 1, true},
		{"1MiB-plus-7-stream", 1<<20 + 7, false},
		{"100MiB", 100 << 20, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxFor(t)
			data := randomData(uint64(i), c.size)
			key := "rt/" + c.name
			var src io.Reader = bytes.NewReader(data)
			if !c.seekable {
				src = onlyReader{src}
			}
			if err := s.Put(ctx, key, src, int64(c.size)); err != nil {
				t.Fatalf("Put %d bytes: %v", c.size, err)
			}
			oi, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat after Put: %v", err)
			}
			if oi.Size != int64(c.size) || oi.ETag == "" || oi.Key != key {
				t.Fatalf("Stat = %+v, want key %q, size %d and an ETag", oi, key, c.size)
			}
			rc, err := s.Get(ctx, key, 0, -1)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, n, err := sum(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("reading Get body: %v", err)
			}
			want, _, _ := sum(bytes.NewReader(data))
			if n != int64(c.size) || got != want {
				t.Fatalf("Get returned %d bytes with sha256 %x, want %d bytes with %x", n, got[:8], c.size, want[:8])
			}
		})
	}
}

func testOverwrite(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	a := bytes.Repeat([]byte("a"), 4096)
	b := bytes.Repeat([]byte("b"), 4096)
	put(t, s, "ow/x", a)
	oa, err := s.Stat(ctx, "ow/x")
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "ow/x", b)
	ob, err := s.Stat(ctx, "ow/x")
	if err != nil {
		t.Fatal(err)
	}
	if got := getAll(t, s, "ow/x", 0, -1); !bytes.Equal(got, b) {
		t.Fatalf("after overwrite Get returned %q..., want the new content", got[:8])
	}
	if oa.ETag == ob.ETag {
		t.Fatalf("ETag %q did not change when the content changed (same size)", oa.ETag)
	}
}

func testShortSource(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	old := []byte("old content")
	put(t, s, "short/x", old)
	err := s.Put(ctx, "short/x", onlyReader{bytes.NewReader(make([]byte, 10))}, 1<<20)
	if err == nil {
		t.Fatal("Put of 1 MiB from a 10-byte source succeeded, want an error")
	}
	if got := getAll(t, s, "short/x", 0, -1); !bytes.Equal(got, old) {
		t.Fatalf("after a failed Put the key holds %d bytes, want the old object", len(got))
	}
	err = s.Put(ctx, "short/new", onlyReader{bytes.NewReader(make([]byte, 10))}, 1<<20)
	if err == nil {
		t.Fatal("Put of 1 MiB from a 10-byte source succeeded, want an error")
	}
	_, err = s.Stat(ctx, "short/new")
	wantNotExist(t, "Stat after a failed Put of a new key", err)
}

func testRanges(t *testing.T, s transfer.ObjectStore) {
	data := randomData(7, 1000)
	put(t, s, "rg/x", data)
	put(t, s, "rg/empty", nil)
	cases := []struct {
		key         string
		off, length int64
		want        []byte
	}{
		{"rg/x", 0, -1, data},
		{"rg/x", 0, 1000, data},
		{"rg/x", 10, 20, data[10:30]},
		{"rg/x", 999, -1, data[999:]},
		{"rg/x", 990, 100, data[990:]},
		{"rg/x", 0, 1, data[:1]},
		{"rg/x", 500, 0, nil},
		{"rg/x", 1000, -1, nil},
		{"rg/x", 1000, 10, nil},
		{"rg/x", 5000, 10, nil},
		{"rg/empty", 0, -1, nil},
		{"rg/empty", 0, 10, nil},
		{"rg/empty", 3, -1, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s@%d+%d", c.key, c.off, c.length), func(t *testing.T) {
			if got := getAll(t, s, c.key, c.off, c.length); !bytes.Equal(got, c.want) {
				t.Fatalf("Get(%q, %d, %d) returned %d bytes, want %d", c.key, c.off, c.length, len(got), len(c.want))
			}
		})
	}
}

func testNotExist(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	_, err := s.Get(ctx, "none/x", 0, -1)
	wantNotExist(t, "Get of a missing key", err)
	_, err = s.Get(ctx, "none/x", 10, 5)
	wantNotExist(t, "ranged Get of a missing key", err)
	_, err = s.Get(ctx, "none/x", 0, 0)
	wantNotExist(t, "zero-length Get of a missing key", err)
	_, err = s.Stat(ctx, "none/x")
	wantNotExist(t, "Stat of a missing key", err)
	_, _, err = s.Load(ctx, "none/x", maxLoad)
	wantNotExist(t, "Load of a missing key", err)
	if got := listKeys(t, s, "none/"); len(got) != 0 {
		t.Fatalf("List of an empty prefix returned %v", got)
	}
}

// The same bytes must carry the same ETag whichever call reports it, or a
// compare-and-swap built on Stat or List would fail for no reason.
func testETagsAgree(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	for _, size := range []int{0, 100, 3 << 20} {
		key := fmt.Sprintf("et/%d", size)
		put(t, s, key, randomData(3, size))
		oi, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		l := listKeys(t, s, key)
		if len(l) != 1 || l[0].ETag != oi.ETag || l[0].Size != oi.Size {
			t.Fatalf("List(%q) = %+v, Stat = %+v: want one entry with the same size and ETag", key, l, oi)
		}
		if size > 1<<20 {
			continue // Load is for small records
		}
		_, etag, err := s.Load(ctx, key, maxLoad)
		if err != nil {
			t.Fatal(err)
		}
		if etag != oi.ETag {
			t.Fatalf("Load ETag %q, Stat ETag %q for the same %d bytes", etag, oi.ETag, size)
		}
	}
}

func testDelete(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	put(t, s, "del/a/x", []byte("x"))
	put(t, s, "del/a/y", []byte("y"))
	if err := s.Delete(ctx, "del/a/x"); err != nil {
		t.Fatalf("Delete of an existing key: %v", err)
	}
	_, err := s.Stat(ctx, "del/a/x")
	wantNotExist(t, "Stat after Delete", err)
	_, err = s.Get(ctx, "del/a/x", 0, -1)
	wantNotExist(t, "Get after Delete", err)
	if got := listKeys(t, s, "del/"); len(got) != 1 || got[0].Key != "del/a/y" {
		t.Fatalf("List after Delete = %+v, want only del/a/y", got)
	}
	if err := s.Delete(ctx, "del/a/x"); err != nil {
		t.Fatalf("second Delete of the same key: %v, want nil", err)
	}
	if err := s.Delete(ctx, "del/never/there"); err != nil {
		t.Fatalf("Delete of a key that never existed: %v, want nil", err)
	}
	// The last object under a prefix can go and come back.
	if err := s.Delete(ctx, "del/a/y"); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, s, "del/"); len(got) != 0 {
		t.Fatalf("List after deleting everything = %+v", got)
	}
	put(t, s, "del/a/y", []byte("again"))
	if got := getAll(t, s, "del/a/y", 0, -1); string(got) != "again" {
		t.Fatalf("Get after re-creating = %q", got)
	}
}

func testInvalidKeys(t *testing.T, s transfer.ObjectStore) {
	ctx := ctxFor(t)
	bad := []string{"", "/abs", "a//b", "a/", "../escape", "a/../../escape", "a/./b", ".", "..", `a\b`, "a b", "ü"}
	for _, k := range bad {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("x")), 1); err == nil {
			t.Errorf("Put(%q) succeeded, want an invalid-key error", k)
		} else if transfer.Retryable(err) {
			t.Errorf("Put(%q): error %v is retryable; an invalid key is permanent", k, err)
		}
		if _, err := s.PutIfAbsent(ctx, k, []byte("x")); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded, want an invalid-key error", k)
		}
		if _, err := s.Stat(ctx, k); err == nil {
			t.Errorf("Stat(%q) succeeded, want an invalid-key error", k)
		}
		if _, err := s.Get(ctx, k, 0, -1); err == nil {
			t.Errorf("Get(%q) succeeded, want an invalid-key error", k)
		}
		if err := s.Delete(ctx, k); err == nil {
			t.Errorf("Delete(%q) succeeded, want an invalid-key error", k)
		}
	}
	if got := listKeys(t, s, ""); len(got) != 0 {
		t.Fatalf("after rejected writes the store lists %+v, want nothing", got)
	}
	if err := s.List(ctx, "../", func(transfer.ObjectInfo) error { return nil }); err == nil {
		t.Error(`List("../") succeeded, want an invalid-prefix error`)
	}
}

func testCancelBefore(t *testing.T, s transfer.ObjectStore) {
	put(t, s, "cb/x", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want an error matching context.Canceled", op, err)
		}
	}
	check("Put", s.Put(ctx, "cb/y", bytes.NewReader([]byte("y")), 1))
	_, err := s.Get(ctx, "cb/x", 0, -1)
	check("Get", err)
	_, err = s.Stat(ctx, "cb/x")
	check("Stat", err)
	check("List", s.List(ctx, "", func(transfer.ObjectInfo) error { return nil }))
	_, _, err = s.Load(ctx, "cb/x", maxLoad)
	check("Load", err)
	_, err = s.PutIfAbsent(ctx, "cb/z", []byte("z"))
	check("PutIfAbsent", err)
	if _, err := s.Stat(ctxFor(t), "cb/y"); err == nil {
		t.Error("a Put with a cancelled context created the object")
	}
	if _, err := s.Stat(ctxFor(t), "cb/z"); err == nil {
		t.Error("a PutIfAbsent with a cancelled context created the object")
	}
}
