package volname

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, name := range []string{"a", "v1", "pg-data_2.x", "0", strings.Repeat("a", MaxLen)} {
		if err := Check(name); err != nil || !Valid(name) {
			t.Errorf("Check(%q) = %v, want accepted", name, err)
		}
	}
	for name, want := range map[string]string{
		"":                            "it is empty",
		".":                           "must start with a letter or digit",
		"..":                          "must start with a letter or digit",
		"../x":                        "must start with a letter or digit",
		"a/b":                         "contain only letters",
		"-x":                          "must start with a letter or digit",
		"_x":                          "must start with a letter or digit",
		"a b":                         "contain only letters",
		"é":                           "must start",
		"a\x00":                       "contain only letters",
		strings.Repeat("a", MaxLen+1): "129 characters long, the limit is 128",
	} {
		err := Check(name)
		if Valid(name) || err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want an ErrInvalid saying %q", name, err, want)
		}
	}
}

// FuzzValid: an accepted name is always exactly one path component that
// stays inside its parent.
func FuzzValid(f *testing.F) {
	for _, s := range []string{"a", "..", "a/b", "a.b", ".a", "a..", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !Valid(name) {
			if Check(name) == nil {
				t.Fatalf("Check(%q) accepted what Valid refused", name)
			}
			return
		}
		if Check(name) != nil {
			t.Fatalf("Check(%q) refused what Valid accepted", name)
		}
		if p := filepath.Join("/base", name); filepath.Dir(p) != "/base" || filepath.Base(p) != name {
			t.Fatalf("name %q is not one path component under /base: %s", name, p)
		}
	})
}
