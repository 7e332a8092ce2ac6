package driver

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/volname"
)

// FuzzValidateName: an accepted name is always one path component inside
// the state directory.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"v1", "../x", "a/b", ".", "..", "a..b", "", strings.Repeat("a", 129), "x\x00y", "ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		root := "/state/volumes"
		p := filepath.Join(root, name)
		if filepath.Dir(p) != root || filepath.Base(p) != name || len(name) > volname.MaxLen {
			t.Fatalf("accepted name %q escapes or is not one component: %s", name, p)
		}
	})
}

// FuzzParseOptions: whatever is accepted comes back complete and
// normalised, and normalising again changes nothing.
func FuzzParseOptions(f *testing.F) {
	f.Add("snapshot_interval", "5m", "takeover", "auto")
	f.Add("snapshot_interval", "0", "sise", "1")
	f.Add("takeover", "MANUAL", "takeover", "manual")
	f.Add("snapshot_interval", "-1h", "", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		got, err := ParseOptions(map[string]string{k1: v1, k2: v2})
		if err != nil {
			return
		}
		if len(got) != len(optionSpecs) {
			t.Fatalf("options %v: not every option filled in", got)
		}
		again, err := ParseOptions(got)
		if err != nil || !maps.Equal(again, got) {
			t.Fatalf("normalised options %v do not parse to themselves: %v, %v", got, again, err)
		}
	})
}

func TestParseOptionsTable(t *testing.T) {
	for _, c := range []struct {
		in      map[string]string
		want    map[string]string
		wantErr string
	}{
		{nil, map[string]string{"snapshot_interval": "5m0s", "takeover": "manual"}, ""},
		{map[string]string{"snapshot_interval": "90s"}, map[string]string{"snapshot_interval": "1m30s", "takeover": "manual"}, ""},
		{map[string]string{"snapshot_interval": " 0 "}, map[string]string{"snapshot_interval": "0s", "takeover": "manual"}, ""},
		{map[string]string{"takeover": "Auto"}, map[string]string{"snapshot_interval": "5m0s", "takeover": "auto"}, ""},
		{map[string]string{"snapshot_interval": "500ms"}, nil, "too short"},
		{map[string]string{"snapshot_interval": "-1m"}, nil, "negative"},
		{map[string]string{"snapshot_interval": "5"}, nil, "not a duration"},
		{map[string]string{"Takeover": "auto"}, nil, `unknown option "Takeover"`},
		{map[string]string{"b": "1", "a": "1"}, nil, `unknown option "a"`}, // same error for the same input
	} {
		got, err := ParseOptions(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseOptions(%v) error = %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("ParseOptions(%v) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
