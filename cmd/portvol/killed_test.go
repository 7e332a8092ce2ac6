package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/writer"
)

// testSeed is the seed of a randomized test: PORTVOL_TEST_SEED, or a new
// one, logged so that a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PORTVOL_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PORTVOL_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with PORTVOL_TEST_SEED=%d)", seed, seed)
	return seed
}

// proc is portvol started as a separate process (this test binary,
// re-executed; see TestMain).
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func startPortvol(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(exe, append([]string{"--"}, args...)...)}
	p.cmd.Env = append(append(os.Environ(), reexecEnv+"=1"), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// wait returns the exit code.
func (p *proc) wait() int {
	err := p.cmd.Wait()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// changeTree rewrites one file of src with new random content, so that
// every import has something to upload.
func changeTree(t *testing.T, src string, rng *rand.Rand) {
	t.Helper()
	data := make([]byte, 1<<20+rng.IntN(1<<20))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("base/1/f%d", rng.IntN(4))), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// claimState reads what a (dead) import left in its lock file.
func claimState(t *testing.T, path string) writer.ClaimRecord {
	t.Helper()
	var r writer.ClaimRecord
	data, err := os.ReadFile(path)
	if err == nil {
		_ = json.Unmarshal(data, &r)
	}
	return r
}

// importKills: portvol import killed with SIGKILL at seeded moments of its
// run (before, while and after it takes the lease, uploads, publishes and
// releases) leaves the volume recoverable by the next import on the same
// host, at once when the lock file proves the lease the dead run's, and
// never refused; afterwards every snapshot verifies and the volume is
// released. No re-run waits: the dead run's lock file proves every lease
// it left (see writer.Claim).
func importKills(t *testing.T, ts testStore, kills int) {
	const ttl = 2 * time.Second
	rng := rand.New(rand.NewPCG(testSeed(t), 9))
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	initStore(t, ts.url)
	lockDir := t.TempDir()
	host := "killtest-cli"
	args := []string{"import", "--store", ts.url, "--host-id", host, "--lease-ttl", ttl.String(), "--lock-dir", lockDir, src, "pg"}

	// Whole runs as processes: how long an import of a change takes
	// here (the second run: the first uploads everything), and when it
	// takes the lease.
	cli(t, args...).ok(t)
	changeTree(t, src, rng)
	events := filepath.Join(t.TempDir(), "events")
	start := time.Now()
	p := startPortvol(t, []string{observeEnv + "=" + events}, args...)
	if p.wait() != 0 {
		t.Fatalf("import: %s", p.stderr.String())
	}
	full := time.Since(start)
	taken := full / 2
	for _, e := range readEvents(t, events) {
		if e.pid == p.cmd.Process.Pid && e.held {
			taken = time.Unix(0, e.at).Sub(start)
		}
	}
	claimPath := writer.ClaimPath(lockDir, storeID(t, ts), host, "pg")

	states := map[string]int{}
	hows := map[string]int{}
	var worst time.Duration
	finished := 0
	heldKills := 0
	for i := range kills {
		changeTree(t, src, rng)
		// A quarter at a moment anywhere in the run; a quarter as soon as
		// its lock file says it is taking the lease (before or after the
		// acquisition is sent); the rest once the run reports its lease
		// taken, at a moment in what remains of a run (so that kills
		// surely land while it holds the lease, whatever the load).
		var delay time.Duration
		p := startPortvol(t, []string{observeEnv + "=" + events}, args...)
		switch i % 4 {
		case 0:
			delay = time.Duration(rng.Int64N(int64(full)))
		case 1: // while it takes the lease: before, or just after the acquisition is sent
			waitClaim(t, claimPath, p.cmd.Process.Pid, i%8 == 5)
		default:
			delay = time.Duration(rng.Int64N(int64((full - taken) * 11 / 10)))
			waitEvent(t, events, p.cmd.Process.Pid)
		}
		time.Sleep(delay)
		_ = p.cmd.Process.Kill()
		if p.wait() == 0 {
			finished++
		}
		left := claimState(t, claimPath)
		rec := head(t, ts.store, "pg").Record
		state := left.State
		if rec.State == lease.Held {
			heldKills++
			state += "/held"
		}
		states[state]++

		t0 := time.Now()
		r := cli(t, append([]string{"import", "--json"}, args[1:]...)...) // the re-run
		took := time.Since(t0)
		if r.code != exitOK {
			t.Fatalf("kill %d after %s (lock file %+v, head %+v): re-run failed: exit %d\n%s", i, delay, left, rec, r.code, r.stderr)
		}
		res := decode[importResult](t, r)
		hows[res.Lease]++
		worst = max(worst, took)
		// Every lease a dead run left is proven its by the lock file
		// ("held" at its generation, or "acquiring" with the exact record
		// sent) and continued at once: no re-run waits out a TTL.
		if rec.State == lease.Held && res.Lease != string(writer.Resumed) {
			t.Errorf("kill %d after %s: the dead run left %+v (lock file %+v), and the re-run's lease was %q, not resumed at once", i, delay, rec, left, res.Lease)
		}
	}
	if heldKills == 0 {
		t.Errorf("none of %d kills left the lease held: the test did not test a killed holder", kills)
	}
	if o := head(t, ts.store, "pg"); o.Record.State != lease.Released {
		t.Errorf("after the last re-run the volume is %s by %s", o.Record.State, o.Record.Owner)
	}
	cli(t, "verify", "--store", ts.url, "--all", "pg").ok(t)
	t.Logf("%d kills of an import that takes %s (the lease taken after %s): %d finished before the kill; what the dead runs left (lock file state/lease): %v; the re-runs' leases: %v; slowest re-run %s (TTL %s)",
		kills, full.Round(time.Millisecond), taken.Round(time.Millisecond), finished, states, hows, worst.Round(time.Millisecond), ttl)
}

// storeID reads the store's id, which names the lock files.
func storeID(t *testing.T, ts testStore) string {
	t.Helper()
	id, err := snapshot.ReadStoreID(context.Background(), ts.store)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestImportKilled(t *testing.T)   { importKills(t, localStore(t), 20) }
func TestS3ImportKilled(t *testing.T) { ts, _ := s3Store(t); importKills(t, ts, 20) }

// event is one line an import wrote to the observer file.
type event struct {
	at   int64 // wall clock, ns
	pid  int
	gen  uint64
	held bool
}

func readEvents(t *testing.T, path string) []event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var evs []event
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var e event
		var volume string
		if _, err := fmt.Sscanf(line, "%d %d %s %d %t", &e.at, &e.pid, &volume, &e.gen, &e.held); err != nil {
			t.Fatalf("observer line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// importsRace: imports started together — two on one host sharing its
// lock directory, one on another host, one on the first host's id from
// another lock directory (another user) — some killed at seeded moments,
// round after round. An observer on the processes (when each took its
// lease and when it was about to give it back, or was killed) and one on
// the store (every head record version it sees) assert that no two ever
// held the volume at once: no windows overlap, generations only rise and
// each has one owner. Afterwards the volume is recovered and verifies.
func importsRace(t *testing.T, ts testStore, rounds int) {
	const ttl = time.Second // the shortest --lease-ttl: same-id imports of another lock directory wait for it
	rng := rand.New(rand.NewPCG(testSeed(t), 11))
	initStore(t, ts.url)
	events := filepath.Join(t.TempDir(), "events")
	env := []string{observeEnv + "=" + events}
	type config struct{ host, lockDir, src string }
	dirA := t.TempDir()
	configs := []config{
		{"a-cli", dirA, ""}, {"a-cli", dirA, ""}, {"b-cli", t.TempDir(), ""}, {"a-cli", t.TempDir(), ""},
	}
	for i := range configs {
		configs[i].src = filepath.Join(t.TempDir(), "src")
		makeTree(t, configs[i].src)
	}
	argsOf := func(c config) []string {
		return []string{"import", "--store", ts.url, "--host-id", c.host, "--lease-ttl", ttl.String(), "--lock-dir", c.lockDir, c.src, "pg"}
	}

	// The store's observer.
	ctx, stop := context.WithCancel(context.Background())
	watchDone := make(chan []string)
	go func() {
		var problems []string
		m, _ := lease.New(ts.store, lease.Options{Host: "observer"})
		owners := map[uint64]string{}
		forced := map[uint64]bool{}
		var last uint64
		for ctx.Err() == nil {
			o, err := m.Inspect(ctx, "pg")
			if err == nil && o.Exists {
				r := o.Record
				if r.Generation < last {
					problems = append(problems, fmt.Sprintf("generation went back from %d to %d", last, r.Generation))
				}
				if prev, ok := owners[r.Generation]; ok && prev != r.Owner && r.State == lease.Held {
					problems = append(problems, fmt.Sprintf("generation %d held by %s and by %s", r.Generation, prev, r.Owner))
				}
				if r.State == lease.Held {
					owners[r.Generation] = r.Owner
				}
				if t := r.Takeover; t != nil && t.Forced && !forced[r.Generation] {
					forced[r.Generation] = true
					problems = append(problems, fmt.Sprintf("generation %d was taken from %s by force, before it expired", r.Generation, t.From))
				}
				last = max(last, r.Generation)
			}
			time.Sleep(2 * time.Millisecond)
		}
		watchDone <- problems
	}()

	type window struct {
		pid      int
		gen      uint64
		from, to int64 // wall clock, ns
	}
	killedAt := map[int]int64{}
	fenced := map[int]bool{} // fenced imports: their windows end unseen
	codes := map[int]int{}
	for round := range rounds {
		procs := make([]*proc, len(configs))
		for i, c := range configs {
			changeTree(t, c.src, rng)
			procs[i] = startPortvol(t, env, argsOf(c)...)
		}
		victim := rng.IntN(len(procs) + 1) // len: nobody is killed
		if victim < len(procs) {
			time.Sleep(time.Duration(rng.Int64N(int64(600 * time.Millisecond))))
			killedAt[procs[victim].cmd.Process.Pid] = time.Now().UnixNano()
			_ = procs[victim].cmd.Process.Kill()
		}
		for i, p := range procs {
			code := p.wait()
			codes[code]++
			if code == exitError && strings.Contains(p.stderr.String(), "lost ownership") {
				// Its renewals came too late on a loaded machine and a
				// process of the same id took the expired lease: the
				// design's fencing, which the store observer checks.
				fenced[p.cmd.Process.Pid] = true
				continue
			}
			if i != victim && code != exitOK && code != exitHeld {
				t.Errorf("round %d: import %d (%s) failed: exit %d\n%s", round, i, configs[i].host, code, p.stderr.String())
			}
		}
	}

	// Recover whatever a kill left held: each configuration imports once
	// more (one refused while another's dead lease is still held simply
	// goes again after the others).
	pending := configs
	for pass := 0; len(pending) > 0 && pass < 4; pass++ {
		var again []config
		for _, c := range pending {
			r := cli(t, argsOf(c)...)
			switch r.code {
			case exitOK:
			case exitHeld:
				again = append(again, c)
			default:
				t.Fatalf("recovery import as %s: exit %d\n%s", c.host, r.code, r.stderr)
			}
		}
		pending = again
	}
	if len(pending) > 0 {
		t.Errorf("after the rounds, %d imports still refused: %+v", len(pending), head(t, ts.store, "pg").Record)
	}
	stop()
	for _, p := range <-watchDone {
		t.Error("store observer: " + p)
	}

	// The processes' observer: windows from taking the lease to giving it
	// back (or being killed) never overlap.
	open := map[int]*window{}
	var windows []*window
	for _, e := range readEvents(t, events) {
		if e.held {
			w := &window{pid: e.pid, gen: e.gen, from: e.at, to: -1}
			open[e.pid] = w
			windows = append(windows, w)
		} else if w := open[e.pid]; w != nil {
			w.to = e.at
			delete(open, e.pid)
		}
	}
	for pid, w := range open {
		at, ok := killedAt[pid]
		if !ok {
			t.Errorf("import %d took generation %d and never gave it back, and was not killed", pid, w.gen)
			continue
		}
		w.to = at
	}
	overlaps := 0
	for i, a := range windows {
		for _, b := range windows[i+1:] {
			if a.from < b.to && b.from < a.to && !fenced[a.pid] && !fenced[b.pid] {
				overlaps++
				t.Errorf("two imports held the volume at once: pid %d generation %d [%d, %d) and pid %d generation %d [%d, %d)",
					a.pid, a.gen, a.from, a.to, b.pid, b.gen, b.from, b.to)
			}
		}
	}
	cli(t, "verify", "--store", ts.url, "--all", "pg").ok(t)
	t.Logf("%d rounds of %d concurrent imports, %d killed, %d fenced: exit codes %v; %d lease windows observed, %d overlapping",
		rounds, len(configs), len(killedAt), len(fenced), codes, len(windows), overlaps)
}

func TestImportsRace(t *testing.T)   { importsRace(t, localStore(t), 4) }
func TestS3ImportsRace(t *testing.T) { ts, _ := s3Store(t); importsRace(t, ts, 4) }

// waitEvent waits until process pid has reported its lease taken (or
// ended: then there is nothing to wait for).
func waitEvent(t *testing.T, path string, pid int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range readEvents(t, path) {
			if e.pid == pid && e.held {
				return
			}
		}
		// Ended (a zombie until the test reaps it): nothing to wait for.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("import %d never took its lease", pid)
}

// waitClaim waits until process pid's lock file says it is taking the
// lease, with sent once it is sending the acquisition (or the process
// ended).
func waitClaim(t *testing.T, path string, pid int, sent bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c := claimState(t, path); c.PID == pid && c.State == "acquiring" && (!sent || c.Nonce != "") {
			return
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatalf("import %d never started taking its lease", pid)
}
