package localdir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
)

const (
	helperEnv   = "LOCALDIR_TEST_HELPER_DIR"
	procs       = 4
	increments  = 15
	createKeys  = 20
	helperStart = "LOCALDIR_TEST_HELPER_START"
)

// TestMain turns the test binary into a writer process when the
// cross-process tests run it again with helperEnv set.
func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		writerProcess(dir)
	}
	os.Exit(m.Run())
}

// writerProcess races the other writers for keys and the counter, then
// exits.
func writerProcess(dir string) {
	s, err := localdir.New(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Start together, so the writers really overlap.
	start, _ := strconv.ParseInt(os.Getenv(helperStart), 10, 64)
	time.Sleep(time.Until(time.Unix(0, start)))
	ctx := context.Background()
	for i := range createKeys {
		if _, err := s.PutIfAbsent(ctx, fmt.Sprintf("create/%02d", i), []byte(strconv.Itoa(os.Getpid()))); err == nil {
			fmt.Printf("won create/%02d\n", i)
		} else if !errors.Is(err, transfer.ErrPrecondition) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	for range increments {
		for {
			data, etag, err := s.Load(ctx, "counter", 1<<10)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			n, _ := strconv.Atoi(string(data))
			if _, err = s.PutIfMatch(ctx, "counter", []byte(strconv.Itoa(n+1)), etag); err == nil {
				break
			} else if !errors.Is(err, transfer.ErrPrecondition) {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
	}
	os.Exit(0)
}

// TestCrossProcess runs conditional writers in separate processes on one
// directory: every create has exactly one winner and no increment of a
// shared counter is lost.
func TestCrossProcess(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.PutIfAbsent(ctx, "counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(500 * time.Millisecond).UnixNano()
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"="+s.Root(), helperStart+"="+strconv.FormatInt(start, 10))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			outs[i], errs[i] = cmd.Output()
			if errs[i] != nil {
				errs[i] = fmt.Errorf("writer process %d: %w: %s", i, errs[i], stderr.String())
			}
		})
	}
	wg.Wait()
	var won []string
	for i := range procs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for line := range strings.Lines(string(outs[i])) {
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), "won "); ok {
				won = append(won, k)
			}
		}
	}
	slices.Sort(won)
	var want []string
	for i := range createKeys {
		want = append(want, fmt.Sprintf("create/%02d", i))
	}
	if !slices.Equal(won, want) {
		t.Fatalf("create winners across %d processes: %q, want each key won exactly once", procs, won)
	}
	data, _, err := s.Load(ctx, "counter", 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != strconv.Itoa(procs*increments) {
		t.Fatalf("counter = %s after %d processes × %d increments: an update was lost", data, procs, increments)
	}
	// Lock and temp files stay out of listings.
	var keys []string
	if err := s.List(ctx, "", func(oi transfer.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != createKeys+1 {
		b, _ := json.Marshal(keys)
		t.Fatalf("List returned %d keys, want %d: %s", len(keys), createKeys+1, b)
	}
}
