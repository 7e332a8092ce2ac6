package transfer_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/transfer"
)

func TestCheckKey(t *testing.T) {
	good := []string{"a", "volumes/v1/head.json", "packs/ab/0123-x_y.z", "..a", "a..", ".hidden/x"}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a", `a\b`, "a b", "a:b", "é", strings.Repeat("a", transfer.MaxKeyLen+1)}
	for _, k := range good {
		if err := transfer.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range bad {
		if err := transfer.CheckKey(k); !errors.Is(err, transfer.ErrPermanent) {
			t.Errorf("CheckKey(%q) = %v, want a permanent error", k, err)
		}
	}
	for p, ok := range map[string]bool{"": true, "volumes/": true, "volumes/v": true, "volumes/.": true, "a//": false, "../": false, "/a": false, "a/./": false} {
		if err := transfer.CheckPrefix(p); (err == nil) != ok {
			t.Errorf("CheckPrefix(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

// A key that passes CheckKey never leaves the directory it is joined to.
func FuzzCheckKey(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/../../b", "..a/b..", "./a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if transfer.CheckKey(key) != nil {
			return
		}
		p := filepath.Join("/root/store", key)
		if !strings.HasPrefix(p, "/root/store/") || filepath.Clean(p) != p {
			t.Fatalf("valid key %q maps to %q outside the store or unclean", key, p)
		}
	})
}
