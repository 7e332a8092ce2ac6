//go:build handoffbench

package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/s3"
	"golang.org/x/sync/errgroup"
)

// The handoff benchmark's section in docs/benchmarks.md lies between
// these markers; other sections of the file are left alone.
const (
	handoffBegin = "<!-- bench:handoff -->"
	handoffEnd   = "<!-- /bench:handoff -->"
)

// handoffRun is one measured handoff of a PostgreSQL database from host A
// to host B.
type handoffRun struct {
	stop    time.Duration // docker stop on A
	mounted time.Duration // until docker start on B succeeded
	ready   time.Duration // until PostgreSQL on B accepts connections
	refused int           // docker start attempts on B refused on the way
	dbBytes int64         // the database directory on A
	upload  int64         // bytes A uploaded for its final snapshot
	fetched int64         // bytes B fetched from the store to restore
	reused  int64         // bytes B took from its older copy
	release time.Duration // A: last unmount until the lease was released
	restore time.Duration // B: restore start until done
	events  string        // both plugins' log entries about the volume, as offsets from docker stop
	ddSync  time.Duration // floor runs: dd + sync of dbBytes on the disk the volumes are on
	// finalNew is the new data in A's final snapshot (plaintext of the
	// chunks it uploaded); ddDelta how long dd + fdatasync of as many
	// bytes took right after the run on the disk B keeps its volumes on:
	// B cannot make the final delta durable in less.
	finalNew int64
	ddDelta  time.Duration
	// putUpload is how long storing as many bytes as A uploaded took in
	// the same store right after the run (storePut).
	putUpload time.Duration
}

// TestHandoffBenchmark measures how long a PostgreSQL database takes to
// move between hosts: from docker stop on host A until PostgreSQL on host
// B accepts connections, for a pgbench database, (a) cold: B has no copy,
// (b) pre-staged: B pulled the published snapshot (portvol pull) before A
// wrote more. It is a benchmark, not a test: make bench-handoff runs it
// and writes the figures into docs/benchmarks.md.
//
// PORTVOL_BENCH_SCALE (pgbench -s, default 50), PORTVOL_BENCH_TX
// (pgbench transactions on A before each handoff, default 2000) and
// PORTVOL_BENCH_RUNS (per case, default 3) change the workload.
//
// pgbench's own rows compress ~20× (the filler column is blank), which
// hides what a move costs real tables; so by default the accounts'
// filler is set to random base64 text after pgbench -i (the table then
// compresses about as well as real data: S2 stores ~72 % of it).
// PORTVOL_BENCH_FILLER=blank keeps pgbench's blank filler.
func TestHandoffBenchmark(t *testing.T) {
	tx, runs := envInt(t, "PORTVOL_BENCH_TX", 2000), envInt(t, "PORTVOL_BENCH_RUNS", 3)
	cmdTimeout = time.Hour // filling a 10 GB database's tables takes minutes
	// PORTVOL_BENCH_SCALE: pgbench -s, or several ("50,600"): the first
	// is the table's main rows, the others add rows for the same cases,
	// run in turn with the first in each round.
	var scales []int
	for _, f := range strings.Split(cmp.Or(os.Getenv("PORTVOL_BENCH_SCALE"), "50"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("PORTVOL_BENCH_SCALE=%q: want pgbench scales (positive integers) separated by commas", os.Getenv("PORTVOL_BENCH_SCALE"))
		}
		scales = append(scales, n)
	}
	switch benchFiller = os.Getenv("PORTVOL_BENCH_FILLER"); benchFiller {
	case "":
		benchFiller = "random"
	case "random", "blank":
	default:
		t.Fatalf("PORTVOL_BENCH_FILLER=%q: use random or blank", benchFiller)
	}
	// PORTVOL_BENCH_VOLUME_FS: where the plugins keep volumes (btrfs by
	// default, as for databases: snapshots read only the change, pulls
	// restore it in place; "directory" for the old layout).
	benchVolumeFS = os.Getenv("PORTVOL_BENCH_VOLUME_FS")
	if benchVolumeFS == "" {
		benchVolumeFS = "btrfs"
	}
	// The plugins' default lease TTL and mount wait: what users run.
	// The btrfs pools are sparse; give them room for the database, the
	// instant a periodic snapshot keeps as its base, and the copy a
	// restore builds beside the live one (the test default, 4G, is too
	// small for a 1.8 GB database under snapshots every few seconds).
	pool := fmt.Sprintf("%dG", max(16, slices.Max(scales)/10))
	c := newCluster(t, clusterOptions{volumeFS: benchVolumeFS, poolSize: pool})
	// PORTVOL_BENCH_CASES: which cases to run (all by default).
	cases := strings.Split(cmp.Or(os.Getenv("PORTVOL_BENCH_CASES"), "cold,pulled,standby,checkpoint,floor"), ",")
	for _, k := range cases {
		if !slices.Contains([]string{"cold", "pulled", "standby", "checkpoint", "floor"}, k) {
			t.Fatalf("PORTVOL_BENCH_CASES=%q: %q is not one of cold, pulled, standby, checkpoint, floor", os.Getenv("PORTVOL_BENCH_CASES"), k)
		}
	}
	sets := make([]*handoffSet, len(scales))
	for j, scale := range scales {
		sets[j] = &handoffSet{scale: scale}
	}
	for i := range runs {
		for j, set := range sets {
			scale := set.scale
			// Standby volumes snapshot every few seconds from their
			// creation, through the database's build: at 10 GB that
			// filled the machine's disk (A's pool, B's standby restores,
			// the store). They run at the first scale only.
			only := func(k string) bool {
				return slices.Contains(cases, k) && (j == 0 || k != "standby" && k != "checkpoint")
			}
			for _, k := range []struct {
				name string
				hc   handoffCase
				to   *[]handoffRun
			}{
				{"cold", handoffCold, &set.cold},
				{"pulled", handoffPulled, &set.staged},
				{"standby", handoffStandby, &set.standby},
				{"checkpoint", handoffCheckpoint, &set.checkpoint},
			} {
				if only(k.name) {
					r := c.handoff(t, scale, tx, k.hc)
					t.Logf("run %d -s %d %-10s %s", i+1, scale, k.name+":", r)
					*k.to = append(*k.to, r)
				}
			}
			if only("floor") {
				// docker stop runs on A's engine and the start on B's, and
				// they differ (storage drivers, mount namespaces): each half
				// of the floor is measured on the engine a handoff runs it on.
				ra := c.floorHandoff(t, c.a, scale, tx)
				rb := c.floorHandoff(t, c.b, scale, tx)
				t.Logf("run %d -s %d floor on A:  %s", i+1, scale, ra)
				t.Logf("run %d -s %d floor on B:  %s; dd + sync of the database's bytes %v", i+1, scale, rb, rb.ddSync.Round(10*time.Millisecond))
				r := rb
				r.stop = ra.stop
				r.mounted = ra.stop + (rb.mounted - rb.stop)
				r.ready = ra.stop + (rb.ready - rb.stop)
				set.floor = append(set.floor, r)
			}
		}
	}
	section := handoffReport(tx, sets)
	t.Logf("\n%s", section)
	if err := writeSection(filepath.Join(repoRoot, "docs", "benchmarks.md"), handoffBegin, handoffEnd, section); err != nil {
		t.Fatal(err)
	}
}

func (r handoffRun) String() string {
	return fmt.Sprintf("total %v (stop %v, B mounted %v; A's release %v, B's restore %v), %d refused starts, database %s, A uploaded %s, B fetched %s and reused %s",
		r.ready.Round(10*time.Millisecond), r.stop.Round(10*time.Millisecond), r.mounted.Round(10*time.Millisecond),
		r.release.Round(10*time.Millisecond), r.restore.Round(10*time.Millisecond),
		r.refused, mib(r.dbBytes), mib(r.upload), mib(r.fetched), mib(r.reused))
}

// handoffSet is one database size's runs, by case.
type handoffSet struct {
	scale                        int
	cold, staged, standby, floor []handoffRun
	checkpoint                   []handoffRun
}

// handoffCase is how far host B is ahead when the move starts.
type handoffCase int

const (
	handoffCold    handoffCase = iota // B has no copy
	handoffPulled                     // B ran portvol pull once, before A's transactions
	handoffStandby                    // B is a standby host; A snapshots every standbyInterval
	// handoffCheckpoint: standby, and before docker stop a CHECKPOINT on
	// A, a periodic snapshot after it and B's pull of that snapshot (a
	// planned switchover: the pages PostgreSQL had not written yet go
	// out while it still serves, not in the final delta).
	handoffCheckpoint
)

// standbyInterval is the standby case's snapshot_interval on A: B follows
// the head (every 2 s, the plugin's follow interval), so the move waits
// for at most about this much of A's writes.
const standbyInterval = "5s"

// handoff creates a pgbench database on A in a new volume, lets A publish
// it once, has A write tx more transactions (B pulls the published copy
// first, or follows it as a standby host, as hc says) and measures the
// move to B.
func (c *cluster) handoff(t *testing.T, scale, tx int, hc handoffCase) handoffRun {
	t.Helper()
	var opts []string
	if hc == handoffStandby || hc == handoffCheckpoint {
		opts = []string{"-o", "standby=" + c.b.name, "-o", "snapshot_interval=" + standbyInterval}
	}
	vol := c.volume(t, opts...)
	var r handoffRun
	pa, want := c.pgbenchDB(t, c.a, vol, scale, tx, &r, func() {
		c.waitReleased(t, c.a, vol)
	}, func() {
		switch hc {
		case handoffPulled:
			c.b.mustPortvol(t, "pull", vol)
		case handoffStandby, handoffCheckpoint:
			// B finds the volumes that name it within its scan interval
			// (30 s) and then follows the head: wait for its first pull,
			// so that the transactions below are what it has to keep up
			// with.
			deadline := time.Now().Add(2 * time.Minute)
			for len(c.b.pluginEvents("standby: pulled the head snapshot", vol)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("host B did not start following %s as a standby host within 2 min", vol)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	})
	pb := c.b.createPG(t, vol) // before the clock: creating a container is not the handoff
	if hc == handoffCheckpoint {
		c.checkpointAndFollow(t, pa, vol)
	}

	t0 := time.Now()
	pa.stop(t)
	r.stop = time.Since(t0)
	for {
		out, err := pb.start()
		if err == nil {
			break
		}
		if !heldBy(out, "hostA") && !strings.Contains(out, "try again") {
			t.Fatalf("host B: docker start: %v\n%s", err, out)
		}
		if r.refused++; r.refused > 100 {
			t.Fatalf("host B: docker start refused 100 times: %s", out)
		}
	}
	r.mounted = time.Since(t0)
	for !pb.ready() {
		if time.Since(t0) > 10*time.Minute {
			t.Fatal("PostgreSQL on host B not ready after 10 min")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.ready = time.Since(t0)

	// What moved, as the plugins logged it: A's last final snapshot and
	// B's last restore of the volume.
	if ev := c.a.pluginEvents("final snapshot taken", vol); len(ev) > 0 {
		r.upload, r.finalNew = int64(number(ev[len(ev)-1]["uploaded"])), int64(number(ev[len(ev)-1]["new"]))
	}
	if ev := c.b.pluginEvents("restored", vol); len(ev) > 0 {
		r.fetched, r.reused = int64(number(ev[len(ev)-1]["fetched"])), int64(number(ev[len(ev)-1]["reused"]))
	}
	r.events = timeline(t0, vol, c.a, c.b)
	t.Logf("timeline of %s:\n%s", vol, r.events)
	r.release = between(c.a.pluginEvents("volume unmounted", vol), c.a.pluginEvents("volume released", vol))
	r.restore = between(c.b.pluginEvents("restoring", vol), c.b.pluginEvents("restored", vol))
	if got := pb.sql(t, readBalances); got != want {
		t.Fatalf("host B reads %q, host A had %q", got, want)
	}
	pb.stop(t)
	if hc != handoffCold && r.finalNew > 0 {
		r.ddDelta = ddSync(t, filepath.Join(c.b.state, "dd-delta"), r.finalNew)
		r.putUpload = c.storePut(t, r.upload)
	}
	// Free the disk for the next run (the store keeps removed volumes in
	// its trash; it goes away with the test).
	c.a.eng.cli("rm", "-f", pa.name)
	c.b.eng.cli("rm", "-f", pb.name)
	for _, h := range []*host{c.b, c.a} {
		h.eng.cli("volume", "rm", "-f", vol)
	}
	return r
}

// checkpointAndFollow runs CHECKPOINT on A and waits until B has pulled a
// periodic snapshot A published after it.
func (c *cluster) checkpointAndFollow(t *testing.T, pa *pgContainer, vol string) {
	t.Helper()
	pa.sql(t, "CHECKPOINT")
	after := time.Now()
	deadline := after.Add(2 * time.Minute)
	for {
		var published []string
		for _, e := range c.a.pluginEvents("periodic snapshot published", vol) {
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["time"])); err == nil && at.After(after) {
				published = append(published, fmt.Sprint(e["snapshot"]))
			}
		}
		for _, e := range c.b.pluginEvents("standby: pulled the head snapshot", vol) {
			if slices.Contains(published, fmt.Sprint(e["snapshot"])) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("host B did not pull a snapshot of %s published after the CHECKPOINT within 2 min", vol)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pgbenchDB makes a pgbench database of the given scale on host A in vol,
// stops and starts it once (stopped runs between the two), runs tx
// transactions (started runs before them), and returns its container and
// readBalances; r gets the database's size.
func (c *cluster) pgbenchDB(t *testing.T, h *host, vol string, scale, tx int, r *handoffRun, stopped, started func()) (*pgContainer, string) {
	t.Helper()
	pa := h.createPG(t, vol)
	pa.mustStart(t)
	pgbench := []string{"exec", pa.name, "pgbench", "-h", "/run/postgresql", "-U", "postgres"}
	if benchFiller == "random" {
		// pgbench's tables, filled by one INSERT each instead of pgbench's
		// COPY of blank filler (then indexes and VACUUM as pgbench -i
		// does): writing the rows once is several times quicker than
		// rewriting a blank table with UPDATE and VACUUM FULL, which
		// matters at 10 GB.
		h.docker(t, append(pgbench, "-i", "-I", "dt", "-s", strconv.Itoa(scale), "-q", "postgres")...)
		pa.sql(t, randomTables(scale))
		// The accounts in two halves, one session each (two cores).
		n := scale * 100000
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				out, err := h.eng.cli("exec", pa.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/run/postgresql", "-U", "postgres",
					"-c", randomAccounts(i*n/2+1, (i+1)*n/2))
				if err != nil {
					errs[i] = fmt.Errorf("%v\n%s", err, out)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("filling pgbench_accounts: %v", err)
		}
		h.docker(t, append(pgbench, "-i", "-I", "vp", "-s", strconv.Itoa(scale), "-q", "postgres")...)
		pa.sql(t, "CHECKPOINT")
	} else {
		h.docker(t, append(pgbench, "-i", "-s", strconv.Itoa(scale), "-q", "postgres")...)
	}
	pa.stop(t)
	stopped()
	pa.mustStart(t)
	started()
	h.docker(t, append(pgbench, "-c", "2", "-j", "2", "-t", strconv.Itoa(tx), "postgres")...)
	want := pa.sql(t, readBalances)
	if kb, err := strconv.ParseInt(strings.Fields(h.docker(t, "exec", pa.name, "du", "-sk", "/var/lib/postgresql/data/pgdata"))[0], 10, 64); err == nil {
		r.dbBytes = kb << 10
	}
	return pa, want
}

// floorHandoff measures what no storage layer can beat: the same database
// stopped in one container and started in another on host h, on the same
// volume of Docker's local driver (nothing moves), and, on host B, dd +
// sync of as many bytes as the database holds on the disk the volumes are
// on (a cold restore must at least write them). The benchmark takes the
// stop from host A's run and the start from host B's, the engines a
// handoff uses for each.
func (c *cluster) floorHandoff(t *testing.T, h *host, scale, tx int) handoffRun {
	t.Helper()
	vol := randomName("floor")
	h.docker(t, "volume", "create", vol)
	t.Cleanup(func() { h.eng.cli("volume", "rm", "-f", vol) })
	var r handoffRun
	pa, want := c.pgbenchDB(t, h, vol, scale, tx, &r, func() {}, func() {})
	pb := h.createPG(t, vol)

	t0 := time.Now()
	pa.stop(t)
	r.stop = time.Since(t0)
	if out, err := pb.start(); err != nil {
		t.Fatalf("floor: docker start: %v\n%s", err, out)
	}
	r.mounted = time.Since(t0)
	for !pb.ready() {
		if time.Since(t0) > 10*time.Minute {
			t.Fatal("floor: PostgreSQL not ready after 10 min")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.ready = time.Since(t0)
	if got := pb.sql(t, readBalances); got != want {
		t.Fatalf("floor: the second container reads %q, the first had %q", got, want)
	}
	pb.stop(t)
	h.eng.cli("rm", "-f", pa.name)
	h.eng.cli("rm", "-f", pb.name)
	h.eng.cli("volume", "rm", "-f", vol)

	// The write floor, on the disk host B keeps its volumes on.
	if h == c.b {
		r.ddSync = ddSync(t, filepath.Join(c.b.state, "dd-floor"), r.dbBytes)
	}
	return r
}

// storePut stores n random bytes in the cluster's store as 16 MiB
// objects, two in flight (as a snapshot's packs go out), from the
// machine, deletes them, and returns how long storing took: the store
// cannot take A's final delta in less.
func (c *cluster) storePut(t *testing.T, n int64) time.Duration {
	t.Helper()
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Options{Endpoint: "http://" + c.s3.Addr(), Region: c.s3.Region, Bucket: c.s3.Bucket,
		Prefix: randomName("put-floor") + "/", Addressing: s3.AddressingPath, AccessKey: c.s3.AccessKey, SecretKey: transfer.Secret(c.s3.SecretKey)})
	if err != nil {
		t.Fatalf("store put floor: %v", err)
	}
	const obj = 16 << 20
	data := make([]byte, obj)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var sizes []int64
	for off := int64(0); off < n; off += obj {
		keys = append(keys, fmt.Sprintf("p%04d", len(keys)))
		sizes = append(sizes, min(obj, n-off))
	}
	d0 := time.Now()
	var g errgroup.Group
	g.SetLimit(2)
	for i, k := range keys {
		g.Go(func() error { return st.Put(ctx, k, bytes.NewReader(data[:sizes[i]]), sizes[i]) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("store put floor: %v", err)
	}
	d := time.Since(d0)
	for _, k := range keys {
		st.Delete(ctx, k)
	}
	return d
}

// ddSync writes n bytes (rounded up to 4 MiB) to file f with dd and
// fdatasync, removes it, and returns how long the write took.
func ddSync(t *testing.T, f string, n int64) time.Duration {
	t.Helper()
	d0 := time.Now()
	if out, err := run(context.Background(), "", "dd", "if=/dev/zero", "of="+f, "bs=4M",
		"count="+strconv.FormatInt((n+(4<<20)-1)/(4<<20), 10), "conv=fdatasync"); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	d := time.Since(d0)
	os.Remove(f)
	return d
}

// benchFiller is PORTVOL_BENCH_FILLER: "random" or "blank";
// benchVolumeFS is PORTVOL_BENCH_VOLUME_FS.
var benchFiller, benchVolumeFS string

// randomTables fills pgbench's branches and tellers for scale as pgbench
// -i does; randomAccounts the accounts from..to, with every account's
// filler 84 characters of random base64 text (a SHA-512 of random(),
// base64-encoded; pgcrypto's gen_random_bytes is twice as slow): rows that
// compress like real data.
func randomTables(scale int) string {
	return fmt.Sprintf(`INSERT INTO pgbench_branches (bid, bbalance) SELECT b, 0 FROM generate_series(1, %[1]d) b; `+
		`INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT t, (t-1)/10+1, 0 FROM generate_series(1, %[1]d*10) t`, scale)
}

func randomAccounts(from, to int) string {
	return fmt.Sprintf(`INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT a, (a-1)/100000+1, 0, `+
		`substr(translate(encode(sha512(random()::text::bytea), 'base64'), E'\n', ''), 1, 84) `+
		`FROM generate_series(%d, %d) a`, from, to)
}

// readBalances checks a pgbench database cheaply: row counts and the sum
// of balances that the transactions changed.
const readBalances = `SELECT (SELECT count(*) || ' ' || sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT count(*) FROM pgbench_history)`

// handoffReport is the markdown section for docs/benchmarks.md.
func handoffReport(tx int, sets []*handoffSet) string {
	main := sets[0]
	scale, cold, staged, standby, floor := main.scale, main.cold, main.staged, main.standby, main.floor
	var b strings.Builder
	fmt.Fprintf(&b, "## Handoff: a PostgreSQL database from one host to another\n\n")
	fmt.Fprintf(&b, "`make bench-handoff` (%s, portvol %s). ", time.Now().UTC().Format("2006-01-02"), gitRevision())
	fmt.Fprintf(&b, "Measured: from `docker stop` of PostgreSQL on host A until PostgreSQL on host B accepts connections "+
		"(`pg_isready`), with B's container created beforehand and `docker start` repeated while portvol refuses "+
		"(A still holds the volume, or B's restore runs past the Mount deadline). Median of %d runs per case; "+
		"each run is a new volume with a `pgbench -i -s %d` database%s that A published once (stop, start), "+
		"then `pgbench -c 2 -t %d` on A before the handoff. Both plugins keep volumes with `PORTVOL_VOLUME_FS=%s`.\n\n", max(len(cold), len(staged), len(standby), len(floor)), scale, fillerText(), tx, benchVolumeFS)
	b.WriteString("| case | total (median) | runs | `docker stop` on A | until B mounted | A's release | B's restore | refused starts | A uploaded | B fetched | B reused |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	type row struct {
		name string
		runs []handoffRun
	}
	var rows []row
	for j, set := range sets {
		size := ""
		if j > 0 {
			size = fmt.Sprintf(", `pgbench -s %d` (%s)", set.scale, mib(dbSize(set)))
		}
		rows = append(rows,
			row{"cold: B has no copy" + size, set.cold},
			row{"pre-staged: `portvol pull` on B before A's last writes" + size, set.staged},
			row{"standby: `-o standby=hostB`, A snapshots every " + standbyInterval + " (`-o snapshot_interval`), B follows" + size, set.standby},
			row{"planned switchover: standby, and `CHECKPOINT` on A, then B pulls the next periodic snapshot, before `docker stop`" + size, set.checkpoint})
	}
	for _, row := range rows {
		rs := row.runs
		if len(rs) == 0 {
			continue
		}
		totals := make([]string, len(rs))
		for i, r := range rs {
			totals[i] = seconds(r.ready)
		}
		fmt.Fprintf(&b, "| %s | **%s** | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.name,
			seconds(median(rs, func(r handoffRun) time.Duration { return r.ready })), strings.Join(totals, ", "),
			seconds(median(rs, func(r handoffRun) time.Duration { return r.stop })),
			seconds(median(rs, func(r handoffRun) time.Duration { return r.mounted })),
			seconds(median(rs, func(r handoffRun) time.Duration { return r.release })),
			seconds(median(rs, func(r handoffRun) time.Duration { return r.restore })),
			strings.Join(mapRuns(rs, func(r handoffRun) string { return strconv.Itoa(r.refused) }), ", "),
			mib(median(rs, func(r handoffRun) int64 { return r.upload })),
			mib(median(rs, func(r handoffRun) int64 { return r.fetched })),
			mib(median(rs, func(r handoffRun) int64 { return r.reused })))
	}
	if len(floor) > 0 {
		stop := median(floor, func(r handoffRun) time.Duration { return r.stop })
		start := median(floor, func(r handoffRun) time.Duration { return r.ready - r.stop })
		dd := median(floor, func(r handoffRun) time.Duration { return r.ddSync })
		fmt.Fprintf(&b, "| floor: no storage layer (PostgreSQL stopped on A and a second container started on B, each on a local volume of its own engine: nothing moves) | **%s** | %s | %s | | | | | | | |\n",
			seconds(median(floor, func(r handoffRun) time.Duration { return r.ready })),
			strings.Join(mapRuns(floor, func(r handoffRun) string { return seconds(r.ready) }), ", "), seconds(stop))
		coldBound := fmt.Sprintf("so a cold handoff cannot take less than about %s", seconds(stop+dd+start))
		if len(cold) > 0 {
			if c := median(cold, func(r handoffRun) time.Duration { return r.ready }); c < stop+dd+start {
				// dd writes into a new file on B's state directory (ext4);
				// the restore writes into the btrfs pool's image on the same
				// disk, which can be quicker: then dd is no bound.
				coldBound = fmt.Sprintf("but the cold handoff took %s, less than that plus the nothing-moved floor (%s): "+
					"writing a new file on B's state directory is no lower bound for B's restore into its volume pool here",
					seconds(c), seconds(stop+dd+start))
			}
		}
		fmt.Fprintf(&b, "\nFloors, measured in the same run: a handoff that moves nothing takes %s (`docker stop` on A %s, then PostgreSQL's "+
			"start on B until `pg_isready` %s); writing the database's %s with `dd` + `fdatasync` into a new file on the disk B keeps its "+
			"volumes on takes %s (runs: %s), %s; a pre-staged handoff cannot take less than %s plus writing the final delta.\n",
			seconds(stop+start), seconds(stop), seconds(start), mib(floor[0].dbBytes), seconds(dd),
			strings.Join(mapRuns(floor, func(r handoffRun) string { return seconds(r.ddSync) }), ", "), coldBound, seconds(stop+start))
	}
	for _, x := range []struct {
		name string
		runs []handoffRun
	}{{"pre-staged", staged}, {"standby", standby}} {
		// Not the planned switchover: its CHECKPOINT before docker stop
		// makes the stop quicker than the floor's, which has none.
		if len(x.runs) == 0 || x.runs[0].finalNew == 0 {
			continue
		}
		nothing := "not measured: no floor case ran"
		if len(floor) > 0 {
			nothing = seconds(median(floor, func(r handoffRun) time.Duration { return r.ready }))
		}
		put := median(x.runs, func(r handoffRun) time.Duration { return r.putUpload })
		dd := median(x.runs, func(r handoffRun) time.Duration { return r.ddDelta })
		bound := put + dd
		if len(floor) > 0 {
			bound += median(floor, func(r handoffRun) time.Duration { return r.ready })
		}
		fmt.Fprintf(&b, "\nThe final delta of the %s runs: A uploaded %s, B had to write %s of new data. Right after each run, storing as many bytes "+
			"as A uploaded in the same store (16 MiB objects, two in flight) took %s (%s), and writing the new data with `dd` + `fdatasync` on B's disk %s (%s). "+
			"A's final snapshot is in the store before A lets go, and B writes it before PostgreSQL starts, so with the nothing-moved floor (%s) "+
			"a %s handoff of this delta through the store cannot take less than about %s here.\n",
			x.name, strings.Join(mapRuns(x.runs, func(r handoffRun) string { return mib(r.upload) }), ", "),
			strings.Join(mapRuns(x.runs, func(r handoffRun) string { return mib(r.finalNew) }), ", "),
			seconds(put), strings.Join(mapRuns(x.runs, func(r handoffRun) string { return fmt.Sprintf("%.2f s", r.putUpload.Seconds()) }), ", "),
			seconds(dd), strings.Join(mapRuns(x.runs, func(r handoffRun) string { return fmt.Sprintf("%.2f s", r.ddDelta.Seconds()) }), ", "),
			nothing, x.name, seconds(bound))
	}
	fmt.Fprintf(&b, "\nDatabase size on disk: %s (pgdata after the transactions). ", mib(dbSize(main)))
	for _, set := range sets[1:] {
		for _, x := range []struct {
			name       string
			main, this []handoffRun
		}{{"cold", cold, set.cold}, {"pre-staged", staged, set.staged}, {"standby", standby, set.standby}, {"planned switchover", main.checkpoint, set.checkpoint}} {
			if len(x.main) > 0 && len(x.this) > 0 {
				m, o := median(x.main, func(r handoffRun) time.Duration { return r.ready }), median(x.this, func(r handoffRun) time.Duration { return r.ready })
				fmt.Fprintf(&b, "%s at %s against %s: ×%.2f (%s / %s). ", x.name, mib(dbSize(set)), mib(dbSize(main)), o.Seconds()/m.Seconds(), seconds(o), seconds(m))
			}
		}
	}
	fmt.Fprintf(&b, "The other columns are medians from the plugins' logs: A's release runs from its last unmount "+
		"to the lease released (final snapshot taken and published); B's restore from its start to its end (inside B's "+
		"Mount, after the wait for A). Uploaded and fetched are compressed bytes through the store; reused are bytes of "+
		"B's older copy used again. The plugins ran with their default lease TTL and mount wait.\n\n")
	for _, row := range []struct {
		name string
		runs []handoffRun
	}{{"cold", cold}, {"standby", standby}, {"planned switchover", main.checkpoint}} {
		if len(row.runs) == 0 {
			continue
		}
		mid := slices.Clone(row.runs)
		slices.SortFunc(mid, func(a, b handoffRun) int { return cmp.Compare(a.ready, b.ready) })
		r := mid[len(mid)/2]
		fmt.Fprintf(&b, "Where the time goes in the median %s run (the plugins' log entries, from `docker stop` on A; "+
			"`docker stop` returned at %s, `docker start` on B at %s, `pg_isready` on B answered at %s):\n\n```\n%s```\n\n",
			row.name, seconds(r.stop), seconds(r.mounted), seconds(r.ready), r.events)
	}
	fmt.Fprintf(&b, "Machine: %s. Host A is the machine's Docker engine (%s storage); host B is a second dockerd on "+
		"the same machine in its own mount and network namespaces (vfs storage), reaching the store over a veth pair. "+
		"The store is versitygw (posix backend) on the same disk as both hosts' volume data, so store traffic does not "+
		"cross a real network, and both hosts share the same CPUs.\n\n", machine(), dockerStorage())
	fmt.Fprintf(&b, "Command: `make bench-handoff` = `go test -tags handoffbench -count=1 -run TestHandoffBenchmark ./integration/ -v -timeout 90m` "+
		"(PORTVOL_BENCH_SCALE, PORTVOL_BENCH_TX, PORTVOL_BENCH_RUNS, PORTVOL_BENCH_FILLER and PORTVOL_BENCH_VOLUME_FS change the workload; PORTVOL_BENCH_CASES picks cases).\n")
	return b.String()
}

// dbSize is the database's size in a set's first run.
func dbSize(s *handoffSet) int64 {
	for _, rs := range [][]handoffRun{s.cold, s.staged, s.standby, s.checkpoint, s.floor} {
		if len(rs) > 0 {
			return rs[0].dbBytes
		}
	}
	return 0
}

// median of f over the runs.
func fillerText() string {
	if benchFiller == "blank" {
		return " (pgbench's blank filler: the rows compress ~20×)"
	}
	return ", its accounts' filler set to random base64 text (so the table compresses like real data, not ~20× as pgbench's blank filler does)"
}

func median[T cmp.Ordered](rs []handoffRun, f func(handoffRun) T) T {
	var zero T
	if len(rs) == 0 {
		return zero
	}
	v := make([]T, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func mapRuns(rs []handoffRun, f func(handoffRun) string) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// machine describes the CPU, memory and kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil && len(strings.Fields(string(b))) >= 3 {
		load = strings.Join(strings.Fields(string(b))[:3], ", ")
	}
	return fmt.Sprintf("%d × %s%s, Linux %s, Docker %s, %s; load average at the end of the runs (1, 5, 15 min): %s",
		runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), dockerVersion(), diskOf(diskTempDir), load)
}

func dockerVersion() string {
	out, _ := mainEngine.cli("version", "--format", "{{.Server.Version}}")
	return strings.TrimSpace(out)
}

func dockerStorage() string {
	out, _ := mainEngine.cli("info", "--format", "{{.Driver}}")
	return strings.TrimSpace(out)
}

// diskOf names the device and file system holding dir.
func diskOf(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown disk"
	}
	best, desc := "", "unknown disk"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		if (dir == f[1] || strings.HasPrefix(dir, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > len(best) {
			best, desc = f[1], fmt.Sprintf("volumes and store on %s (%s)", f[0], f[2])
		}
	}
	return desc
}

func gitRevision() string {
	out, err := run(context.Background(), "", "git", "-C", repoRoot, "describe", "--always", "--dirty")
	if err != nil {
		return "unknown revision"
	}
	return strings.TrimSpace(out)
}

// writeSection replaces what lies between begin and end in the markdown
// file at path (creating the file, or appending the section, if needed).
func writeSection(path, begin, end, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	var out []byte
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	switch {
	case i >= 0 && j > i:
		out = append(append(append([]byte{}, old[:i]...), block...), old[j+len(end):]...)
	case len(old) == 0:
		out = []byte("# Benchmarks\n\n" + block + "\n")
	default:
		out = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), block+"\n"...)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// between is the time from the last entry of from to the last entry of
// to, by the plugin's own timestamps (0 if either is missing).
func between(from, to []map[string]any) time.Duration {
	if len(from) == 0 || len(to) == 0 {
		return 0
	}
	t0, err0 := time.Parse(time.RFC3339Nano, fmt.Sprint(from[len(from)-1]["time"]))
	t1, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(to[len(to)-1]["time"]))
	if err0 != nil || err1 != nil {
		return 0
	}
	return t1.Sub(t0)
}
