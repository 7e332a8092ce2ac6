package lease_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
)

var update = flag.Bool("update", false, "rewrite golden files")

func goldenRecord() lease.Record {
	return lease.Record{
		Version: 1, Volume: "db", State: lease.Held, Owner: "hostB", Generation: 8,
		Head: "20260102T030405Z-4f2a", HeadGeneration: 7, Seq: 42, Nonce: "0123456789abcdef0123456789abcdef", TTLMS: 30000,
		Renewed:  time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC),
		Takeover: &lease.Takeover{From: "hostA", Generation: 7, UnchangedMS: 31250},
	}
}

// The stored format is a contract between hosts running different builds:
// it changes only with RecordVersion.
func TestRecordGolden(t *testing.T) {
	got, err := lease.Encode(goldenRecord())
	if err != nil {
		t.Fatal(err)
	}
	const path = "testdata/head-v1.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Encode changed the stored format:\n%s\nwant (%s):\n%s", got, path, want)
	}
	back, err := lease.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if g := goldenRecord(); back.Renewed != g.Renewed || *back.Takeover != *g.Takeover || back.Head != g.Head || back.Seq != g.Seq {
		t.Errorf("Decode(golden) = %+v, want %+v", back, g)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := lease.Encode(goldenRecord())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string { return strings.Replace(string(good), old, new, 1) }
	for _, tc := range []struct {
		name, data string
		want       error
		says       string
	}{
		{"empty", "", lease.ErrCorrupt, "unexpected end"},
		{"array", "[1]", lease.ErrCorrupt, "cannot unmarshal"},
		{"no version", `{"volume":"db"}`, lease.ErrCorrupt, "no version"},
		{"version 2", edit(`"version": 1`, `"version": 2`), lease.ErrVersion, "upgrade portvol"},
		{"version 0", edit(`"version": 1`, `"version": 0`), lease.ErrCorrupt, "bad version 0"},
		{"version 1.5", edit(`"version": 1`, `"version": 1.5`), lease.ErrCorrupt, "bad version"},
		{"unknown key", edit(`"seq"`, `"extra": 1, "seq"`), lease.ErrCorrupt, `unknown key "extra"`},
		{"other case", edit(`"owner"`, `"Owner"`), lease.ErrCorrupt, `unknown key "Owner"`},
		{"duplicate", edit(`"seq": 42`, `"seq": 42, "seq": 43`), lease.ErrCorrupt, `duplicate key "seq"`},
		{"missing nonce", edit(`"nonce": "0123456789abcdef0123456789abcdef",`, ``), lease.ErrCorrupt, `missing keys ["nonce"]`},
		{"trailing", string(good) + "{}", lease.ErrCorrupt, "after top-level value"},
		{"bad state", edit(`"held"`, `"leased"`), lease.ErrCorrupt, "unknown state"},
		{"bad owner", edit(`"hostB"`, `"../x"`), lease.ErrCorrupt, "owner"},
		{"bad volume", edit(`"volume": "db"`, `"volume": "a/b"`), lease.ErrCorrupt, "volume name"},
		{"held gen 0", edit(`"generation": 8`, `"generation": 0`), lease.ErrCorrupt, "generation"},
		{"huge gen", edit(`"generation": 8`, `"generation": 18446744073709551615`), lease.ErrCorrupt, "out of range"},
		{"negative gen", edit(`"generation": 8`, `"generation": -1`), lease.ErrCorrupt, "cannot unmarshal"},
		{"head from future", edit(`"head_generation": 7`, `"head_generation": 9`), lease.ErrCorrupt, "head_generation"},
		{"bad head", edit(`"20260102T030405Z-4f2a"`, `".."`), lease.ErrCorrupt, "head snapshot"},
		{"zero ttl", edit(`"ttl_ms": 30000`, `"ttl_ms": 0`), lease.ErrCorrupt, "ttl_ms"},
		{"bad nonce", edit(`0123456789abcdef0123456789abcdef`, `short`), lease.ErrCorrupt, "nonce"},
		{"takeover key", edit(`"forced"`, `"force"`), lease.ErrCorrupt, `takeover: unknown key "force"`},
		{"takeover gen", edit(`"generation": 7,`, `"generation": 8,`), lease.ErrCorrupt, "takeover: generation"},
		{"bad time", edit(`2026-01-02T03:04:05.6Z`, `yesterday`), lease.ErrCorrupt, "cannot parse"},
		{"too big", string(good) + strings.Repeat(" ", lease.MaxRecordSize), lease.ErrCorrupt, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.data == string(good) {
				t.Fatal("the edit did not apply")
			}
			_, err := lease.Decode([]byte(tc.data))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Decode: %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	r := goldenRecord()
	r.State = "borrowed"
	if _, err := lease.Encode(r); err == nil {
		t.Error("Encode wrote a record with an unknown state")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := lease.Encode(goldenRecord())
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"takeover":{}}`))
	f.Add([]byte(`{"version":1,"takeover":null,"takeover":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := lease.Decode(data)
		if err != nil {
			if !errors.Is(err, lease.ErrCorrupt) && !errors.Is(err, lease.ErrVersion) {
				t.Fatalf("error matches neither ErrCorrupt nor ErrVersion: %v", err)
			}
			return
		}
		again, err := lease.Encode(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := lease.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again2, _ := lease.Encode(r2); !bytes.Equal(again, again2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", again, again2)
		}
	})
}
