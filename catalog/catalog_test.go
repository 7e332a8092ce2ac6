package catalog_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

func newStore(t *testing.T) transfer.ObjectStore {
	st, err := localdir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func vol(name string) catalog.Volume {
	return catalog.Volume{
		Name:      name,
		Options:   map[string]string{"snapshot_interval": "5m0s", "takeover": "manual"},
		CreatedAt: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC),
		CreatedBy: "hostA",
	}
}

func TestCreateGetNames(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	for _, n := range []string{"db", "cache", "a.b-c_d"} {
		got, created, err := catalog.Create(ctx, st, vol(n))
		if err != nil || !created || got.Name != n {
			t.Fatalf("Create(%s) = %+v, %v, %v", n, got, created, err)
		}
	}
	// Keys beside the records (head, snapshots) are not volumes.
	if err := st.Put(ctx, "volumes/db/head.json", strings.NewReader("{}"), 2); err != nil {
		t.Fatal(err)
	}
	names, err := catalog.Names(ctx, st)
	if err != nil || !reflect.DeepEqual(names, []string{"a.b-c_d", "cache", "db"}) {
		t.Fatalf("Names = %v, %v", names, err)
	}
	got, err := catalog.Get(ctx, st, "db")
	if err != nil || !reflect.DeepEqual(got.Options, vol("db").Options) || got.CreatedBy != "hostA" || got.Version != catalog.RecordVersion {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := catalog.Get(ctx, st, "nope"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestCreateExistingKeepsFirstRecord(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	first := vol("db")
	if _, _, err := catalog.Create(ctx, st, first); err != nil {
		t.Fatal(err)
	}
	second := vol("db")
	second.Options = map[string]string{"takeover": "auto"}
	second.CreatedBy = "hostB"
	got, created, err := catalog.Create(ctx, st, second)
	if err != nil || created {
		t.Fatalf("second Create: created %v, err %v", created, err)
	}
	if got.CreatedBy != "hostA" || got.Options["takeover"] != "manual" {
		t.Fatalf("second Create returned %+v, want the first record", got)
	}
	// Repeating the identical create (a retry after a lost response) reports
	// it as created by this call.
	if _, created, err := catalog.Create(ctx, st, first); err != nil || !created {
		t.Fatalf("identical Create: created %v, err %v", created, err)
	}
}

func TestConcurrentCreatesAgreeOnOneRecord(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	var wg sync.WaitGroup
	results := make([]catalog.Volume, 8)
	wins := make([]bool, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := vol("db")
			v.CreatedBy = "host" + string(rune('A'+i))
			got, created, err := catalog.Create(ctx, st, v)
			if err != nil {
				t.Error(err)
			}
			results[i], wins[i] = got, created
		}()
	}
	wg.Wait()
	n := 0
	for i := range results {
		if wins[i] {
			n++
		}
		if results[i].CreatedBy != results[0].CreatedBy {
			t.Fatalf("hosts disagree on the record: %s vs %s", results[i].CreatedBy, results[0].CreatedBy)
		}
	}
	if n != 1 {
		t.Fatalf("%d creators won, want exactly 1", n)
	}
}

func TestBadRecords(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if _, _, err := catalog.Create(ctx, st, vol("../x")); err == nil || !strings.Contains(err.Error(), "invalid volume name") {
		t.Fatalf("Create(../x) = %v", err)
	}
	cases := map[string]string{
		"garbage":   `not json`,
		"unknown":   `{"version":1,"name":"db","options":{},"created_at":"2026-11-27T07:00:00Z","created_by":"a","extra":1}`,
		"newer":     `{"version":9,"name":"db","options":{},"created_at":"2026-11-27T07:00:00Z","created_by":"a"}`,
		"trailing":  `{"version":1,"name":"db","options":{},"created_at":"2026-11-27T07:00:00Z","created_by":"a"} {}`,
		"othername": `{"version":1,"name":"other","options":{},"created_at":"2026-11-27T07:00:00Z","created_by":"a"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if err := st.Put(ctx, catalog.Key("db"), strings.NewReader(body), int64(len(body))); err != nil {
				t.Fatal(err)
			}
			_, err := catalog.Get(ctx, st, "db")
			if !errors.Is(err, catalog.ErrCorrupt) || !strings.Contains(err.Error(), `volume "db"`) {
				t.Fatalf("Get = %v, want ErrCorrupt naming the volume", err)
			}
		})
	}
	if err := st.Put(ctx, catalog.Key("db"), strings.NewReader(cases["newer"]), int64(len(cases["newer"]))); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Get(ctx, st, "db"); err == nil || !strings.Contains(err.Error(), "upgrade portvol") {
		t.Fatalf("newer record: %v, want advice to upgrade", err)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := catalog.Encode(catalog.Volume{Version: 1, Name: "db", Options: map[string]string{"a": "b"}})
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := catalog.Decode(data)
		if err != nil {
			return
		}
		again, err := catalog.Encode(v)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if _, err := catalog.Decode(again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}
