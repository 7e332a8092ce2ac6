package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMigrate moves volumes, and PostgreSQL databases on them, between two
// Docker hosts sharing one S3 store (see cluster). The subtests share the
// cluster and use volumes of their own.
func TestMigrate(t *testing.T) {
	c := newCluster(t, clusterOptions{relays: true, leaseTTL: 6 * time.Second, mountWait: 4 * time.Second})
	t.Run("Plumbing", c.testPlumbing)
	t.Run("CreateVisibleOnB", c.testCreateVisibleOnB)
	t.Run("MountRefusedWhileHeld", c.testMountRefusedWhileHeld)
	t.Run("PostgresRoundTrip", c.testPostgresRoundTrip)
	t.Run("PluginKilledBeforeRelease", c.testPluginKilledBeforeRelease)
	t.Run("TakeoverAfterHostLoss", c.testTakeoverAfterHostLoss)
	t.Run("Compose", c.testCompose)
}

// volume creates a uniquely named volume on host A and removes it from
// both hosts when t ends.
func (c *cluster) volume(t *testing.T, opts ...string) string {
	t.Helper()
	name := randomName("db")
	c.a.docker(t, append(append([]string{"volume", "create", "-d", e2ePlugin}, opts...), name)...)
	t.Cleanup(func() {
		c.b.eng.cli("volume", "rm", "-f", name)
		c.a.eng.cli("volume", "rm", "-f", name)
	})
	return name
}

// heldBy reports whether docker's output is portvol refusing a Mount
// because holder has the volume, pointing at portvol takeover.
func heldBy(out, holder string) bool {
	return strings.Contains(out, holder) && strings.Contains(out, "portvol takeover")
}

// startWhenFree starts p, again and again while the previous owner still
// holds the volume or the restore is still running (what a user who
// retries does), for up to limit. It returns how many starts failed.
func startWhenFree(t *testing.T, p *pgContainer, prevOwner string, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for failed := 0; ; failed++ {
		out, err := p.start()
		if err == nil {
			p.waitReady(t)
			return failed
		}
		if !heldBy(out, prevOwner) && !strings.Contains(out, "try again") {
			t.Fatalf("%s: docker start %s: %v\n%s", p.h.name, p.name, err, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: docker start still refused after %v: %s", p.h.name, limit, out)
		}
		if failed == 0 {
			t.Logf("%s: start refused (retrying every second): %s", p.h.name, out)
		}
		time.Sleep(time.Second)
	}
}

// Both hosts run PostgreSQL on portvol volumes of their own, and host B's
// namespace reaches the S3 server: the harness itself works.
func (c *cluster) testPlumbing(t *testing.T) {
	for _, h := range []*host{c.a, c.b} {
		vol := randomName("own")
		h.docker(t, "volume", "create", "-d", e2ePlugin, vol)
		t.Cleanup(func() { h.eng.cli("volume", "rm", "-f", vol) })
		p := h.createPG(t, vol)
		p.mustStart(t)
		p.sql(t, createMoves+"; "+insertMoves(1, 10, h.name))
		p.stop(t)
		p.mustStart(t)
		if got, want := p.sql(t, readMoves), expectMoves(rowSpan{1, 10, h.name}); got != want {
			t.Errorf("%s: PostgreSQL on its own volume reads %q, want %q", h.name, got, want)
		}
		p.stop(t)
	}
	// A plain HTTP request from B's namespace gets an S3 answer (403
	// without credentials).
	out, _ := c.b.command("busybox", "wget", "-q", "-O", "-", "http://"+c.s3.Addr()+"/").CombinedOutput()
	if !strings.Contains(string(out), "HTTP/1.1 403") {
		t.Errorf("host B cannot reach the S3 server at %s: %s", c.s3.Addr(), out)
	}
}

// A volume created on A is known on B without creating it there: the
// store is the source of truth.
func (c *cluster) testCreateVisibleOnB(t *testing.T) {
	vol := c.volume(t, "-o", "snapshot_interval=1m")
	if ls := c.b.docker(t, "volume", "ls", "-q"); !strings.Contains(ls, vol) {
		t.Errorf("docker volume ls on host B does not list %s created on host A:\n%s", vol, ls)
	}
	out, err := c.b.eng.cli("volume", "inspect", "-f", "{{.Driver}} {{.Scope}}", vol)
	if err != nil || strings.TrimSpace(out) != e2ePlugin+":latest global" {
		t.Fatalf("docker volume inspect on host B: %v: %s", err, out)
	}
	st := c.b.status(t, vol)
	if st["snapshot_interval"] != "1m0s" || st["created_by"] != "hostA" {
		t.Errorf("host B's status of a volume host A created: %v", st)
	}
	// docker volume create on B of the same name is a no-op (Get finds
	// it), and B's docker run uses it.
	c.b.docker(t, "volume", "create", "-d", e2ePlugin, vol)
	if got := c.b.docker(t, "run", "--rm", "--label", e2eLabel, "--network", "none", "-v", vol+":/data", pgImage,
		"sh", "-c", "echo from B > /data/f; cat /data/f"); got != "from B" {
		t.Errorf("host B writes and reads %q", got)
	}
}

// While a container on A uses the volume, B's docker run is refused with
// the holder's name; once A's container is gone, B's next docker run
// waits for A's release and reads what A wrote.
func (c *cluster) testMountRefusedWhileHeld(t *testing.T) {
	vol := c.volume(t)
	ca := randomName("holder")
	c.a.docker(t, "run", "-d", "--name", ca, "--label", e2eLabel, "--network", "none", "-v", vol+":/data", pgImage,
		"sh", "-c", "echo written on A > /data/f; exec sleep 600")
	t.Cleanup(func() { c.a.eng.cli("rm", "-f", ca) })
	waitFor(t, time.Minute, "the container on A to write", func() bool {
		out, _ := c.a.eng.cli("exec", ca, "cat", "/data/f")
		return strings.TrimSpace(out) == "written on A"
	})

	readOnB := []string{"run", "--rm", "--label", e2eLabel, "--network", "none", "-v", vol + ":/data", pgImage, "cat", "/data/f"}
	start := time.Now()
	out, err := c.b.eng.cli(readOnB...)
	if err == nil {
		t.Fatalf("host B mounted %s while host A's container uses it; read %q", vol, out)
	}
	t.Logf("host B refused after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	if !heldBy(out, "hostA") {
		t.Errorf("host B's refusal does not name the holder hostA and portvol takeover: %s", out)
	}
	if st := c.b.status(t, vol); st["owner"] != "hostA" || st["lease"] != "held" {
		t.Errorf("host B's status while A holds: owner %v, lease %v; want hostA, held (%v)", st["owner"], st["lease"], st)
	}

	c.a.docker(t, "rm", "-f", ca)
	if got := c.b.docker(t, readOnB...); got != "written on A" {
		t.Errorf("host B reads %q after A let go, want %q", got, "written on A")
	}
}

// The main path: a database created on A moves to B, gets more
// rows there and moves back to A, which fetches only what B changed.
func (c *cluster) testPostgresRoundTrip(t *testing.T) {
	vol := c.volume(t)
	pa := c.a.createPG(t, vol)
	pa.mustStart(t)
	pa.sql(t, createMoves+"; "+insertMoves(1, 1000, "hostA"))
	pa.createBlobs(t, 16000)
	c.a.docker(t, "exec", pa.name, "pgbench", "-i", "-s", "2", "-q", "-h", "/run/postgresql", "-U", "postgres", "postgres")
	c.a.docker(t, "exec", pa.name, "pgbench", "-t", "200", "-h", "/run/postgresql", "-U", "postgres", "postgres")
	blobs, accounts := pa.sql(t, readBlobs), pa.sql(t, readAccounts)
	pa.stop(t)

	// A to B: B has no copy and fetches everything.
	pb := c.b.createPG(t, vol)
	_, down0 := c.b.relay.counters()
	startWhenFree(t, pb, "hostA", 2*time.Minute)
	_, down1 := c.b.relay.counters()
	cold := down1 - down0
	want := expectMoves(rowSpan{1, 1000, "hostA"})
	if got := pb.sql(t, readMoves); got != want {
		t.Fatalf("host B reads moves %q, want %q", got, want)
	}
	if got := pb.sql(t, readBlobs); got != blobs {
		t.Errorf("host B reads blobs %q, host A had %q", got, blobs)
	}
	if got := pb.sql(t, readAccounts); got != accounts {
		t.Errorf("host B reads pgbench_accounts %q, host A had %q", got, accounts)
	}
	genB := c.b.status(t, vol)["generation"].(float64)
	pb.sql(t, insertMoves(1001, 1500, "hostB"))
	c.b.docker(t, "exec", pb.name, "pgbench", "-t", "100", "-h", "/run/postgresql", "-U", "postgres", "postgres")
	accounts = pb.sql(t, readAccounts)
	pb.stop(t)

	// B to A: A still has its older copy and fetches what B changed.
	_, down0 = c.a.relay.counters()
	startWhenFree(t, pa, "hostB", 2*time.Minute)
	_, down1 = c.a.relay.counters()
	delta := down1 - down0
	want = expectMoves(rowSpan{1, 1000, "hostA"}, rowSpan{1001, 1500, "hostB"})
	if got := pa.sql(t, readMoves); got != want {
		t.Fatalf("host A reads moves %q after the move back, want %q", got, want)
	}
	if got := pa.sql(t, readBlobs); got != blobs {
		t.Errorf("host A reads blobs %q after the move back, want %q", got, blobs)
	}
	if got := pa.sql(t, readAccounts); got != accounts {
		t.Errorf("host A reads pgbench_accounts %q after the move back, host B had %q", got, accounts)
	}
	// portvol status on each host: A (its plugin's socket given) owns a
	// newer generation; B (socket found by the CLI itself) keeps its copy.
	if st := c.a.statusJSON(t, vol, c.a.socket()); st["owner"] != "hostA" || st["lease"] != "held" ||
		st["local"] != "mounted" || st["generation"].(float64) <= genB {
		t.Errorf("portvol status on host A after the move back: %v (host B had generation %v)", st, genB)
	}
	if st := c.b.statusJSON(t, vol, ""); st["owner"] != "hostA" || st["local"] != "ready" {
		t.Errorf("portvol status on host B after the move back: %v", st)
	}
	t.Logf("bytes from the store: host B (no copy) %d, host A moving back (older copy) %d", cold, delta)
	if delta*2 > cold {
		t.Errorf("moving back to A fetched %d bytes, more than half of the %d host B fetched without a copy: not a delta", delta, cold)
	}
	pa.stop(t)
}

// kill -9 of host A's plugin after the container stopped, while the final
// snapshot is still uploading: the lease stays with A, B is refused; the
// plugin that dockerd restarts finishes the upload and lets go, and B then
// gets every row.
func (c *cluster) testPluginKilledBeforeRelease(t *testing.T) {
	vol := c.volume(t)
	pa := c.a.createPG(t, vol)
	pa.mustStart(t)
	pa.sql(t, createMoves+"; "+insertMoves(1, 2000, "hostA"))
	pa.createBlobs(t, 24000)
	blobs := pa.sql(t, readBlobs)

	// A slow uplink: the final snapshot (some 50 MB) takes most of a
	// minute, longer than B's Mount waits.
	c.a.relay.setRate(1 << 20)
	t.Cleanup(func() { c.a.relay.setRate(0) })
	up0, _ := c.a.relay.counters()
	pa.stop(t)
	waitFor(t, time.Minute, "host A's final upload to start", func() bool {
		up, _ := c.a.relay.counters()
		return up-up0 > 1<<20
	})
	old := c.a.pluginPID()
	if old == 0 {
		t.Fatal("cannot find host A's plugin process")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	up, _ := c.a.relay.counters()
	t.Logf("killed host A's plugin (pid %d) after %d bytes of its upload", old, up-up0)
	waitFor(t, time.Minute, "dockerd to restart host A's plugin", func() bool {
		p := c.a.pluginPID()
		return p != 0 && p != old
	})

	// The restarted plugin still owns the volume and is finishing the
	// upload; docker volume inspect on A says so.
	var st map[string]any
	waitFor(t, time.Minute, "host A's status to show it finishing the upload", func() bool {
		st = c.a.status(t, vol)
		return st["lease"] != "unknown" // while the new process connects to the store
	})
	if st["owner"] != "hostA" || st["lease"] != "held" || st["local"] != "releasing" {
		t.Errorf("host A's status after its plugin restarted: owner %v, lease %v, local %v; want hostA, held, releasing",
			st["owner"], st["lease"], st["local"])
	}

	pb := c.b.createPG(t, vol)
	out, err := pb.start()
	if err == nil {
		t.Fatalf("host B started PostgreSQL while host A had not released %s", vol)
	}
	if !heldBy(out, "hostA") {
		t.Errorf("host B's refusal does not name the holder hostA and portvol takeover: %s", out)
	}

	c.a.relay.setRate(0)
	failed := startWhenFree(t, pb, "hostA", 2*time.Minute)
	t.Logf("host B started after %d more refused starts", failed)
	if got, want := pb.sql(t, readMoves), expectMoves(rowSpan{1, 2000, "hostA"}); got != want {
		t.Errorf("host B reads moves %q, want %q", got, want)
	}
	if got := pb.sql(t, readBlobs); got != blobs {
		t.Errorf("host B reads blobs %q, host A had %q", got, blobs)
	}
	pb.stop(t)
}

// Host A stops answering for good while its database runs (its plugin is
// frozen: no more renewals). Before that, portvol takeover on B is refused
// because A's lease is live (it watches the lease and sees A renew it).
// Once A is silent, B's docker start is refused naming A, portvol takeover
// is accepted after a full TTL of silence and says what is lost, and B's
// database has the last published rows. When A comes back it finds itself
// fenced: its copy is kept aside, its status says diverged, and nothing it
// does reaches the store.
func (c *cluster) testTakeoverAfterHostLoss(t *testing.T) {
	vol := c.volume(t, "-o", "snapshot_interval=1h")
	pa := c.a.createPG(t, vol)
	pa.mustStart(t)
	pa.sql(t, createMoves+"; "+insertMoves(1, 100, "hostA"))
	pa.stop(t) // publishes rows 1-100
	c.waitReleased(t, c.a, vol)
	pa.mustStart(t)
	pa.sql(t, insertMoves(101, 150, "hostA")) // never published

	out, err := c.b.portvol("takeover", vol)
	if strings.Contains(out, "unknown command") {
		t.Fatalf("portvol has no takeover command: %s", out)
	}
	if err == nil {
		t.Fatalf("portvol takeover on host B succeeded while host A renewed its lease:\n%s", out)
	}
	t.Logf("takeover while host A lives: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "hostA") {
		t.Errorf("refused takeover does not name the holder hostA: %s", out)
	}

	pid := c.a.pluginPID()
	if pid == 0 {
		t.Fatal("cannot find host A's plugin process")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)

	pb := c.b.createPG(t, vol)
	if out, err := pb.start(); err == nil || !heldBy(out, "hostA") {
		t.Errorf("host B's start while host A is silent: %v: %s", err, out)
	}
	took := c.b.mustPortvol(t, "takeover", vol)
	t.Logf("takeover: %s", took)
	// What is lost: whatever hostA wrote after the head snapshot.
	st := c.b.status(t, vol)
	head := stringField(st, "head_snapshot")
	if head == "" || !strings.Contains(took, "hostA") || !strings.Contains(took, head) ||
		!(strings.Contains(took, "lost") || strings.Contains(took, "gone")) {
		t.Errorf("portvol takeover does not say what is lost (hostA's writes after snapshot %q): %s", head, took)
	}
	if note := stringField(st, "taken_over"); !strings.Contains(note, "hostA") {
		t.Errorf("host B's status does not record the takeover from hostA: %v", st)
	}
	pb.mustStart(t)
	if got, want := pb.sql(t, readMoves), expectMoves(rowSpan{1, 100, "hostA"}); got != want {
		t.Fatalf("host B after takeover reads %q, want the published rows %q", got, want)
	}
	pb.sql(t, insertMoves(201, 260, "hostB"))
	objects0, bytes0 := c.s3.objects(c.prefix)

	resume()
	waitFor(t, time.Minute, "host A to find itself fenced", func() bool {
		return c.a.status(t, vol)["local"] == "diverged"
	})
	// A's database still runs on A's copy; stopping it unmounts on a
	// host that lost the lease.
	if got, want := pa.sql(t, readMoves), expectMoves(rowSpan{1, 150, "hostA"}); got != want {
		t.Errorf("host A's own database reads %q, want %q", got, want)
	}
	pa.stop(t)
	stA := c.a.status(t, vol)
	t.Logf("host A's status after its unmount: %v", stA)
	if stA["local"] != "diverged" || stA["owner"] != "hostB" {
		t.Errorf("host A's status after its unmount: local %v, owner %v; want diverged, hostB", stA["local"], stA["owner"])
	}
	if objects1, bytes1 := c.s3.objects(c.prefix); objects1 != objects0 || bytes1 < bytes0-4096 || bytes1 > bytes0+4096 {
		t.Errorf("the store changed while only fenced host A acted: %d objects (%d bytes) before, %d (%d) after",
			objects0, bytes0, objects1, bytes1)
	}
	c.checkKeptCopy(t, stA, expectMoves(rowSpan{1, 150, "hostA"}))

	// B's data is unaffected: B publishes on stop, and a new container
	// restores from the store.
	pb.stop(t)
	c.waitReleased(t, c.b, vol)
	c.b.docker(t, "rm", pb.name)
	pb2 := c.b.createPG(t, vol)
	pb2.mustStart(t)
	if got, want := pb2.sql(t, readMoves), expectMoves(rowSpan{1, 100, "hostA"}, rowSpan{201, 260, "hostB"}); got != want {
		t.Errorf("host B reads %q after fenced host A came back, want %q", got, want)
	}
	if st := c.b.status(t, vol); st["owner"] != "hostB" || st["local"] != "mounted" {
		t.Errorf("host B's status: %v", st)
	}
	pb2.stop(t)
}

// checkKeptCopy starts PostgreSQL on the copy of the volume that fenced
// host A kept aside and checks that it holds what A wrote: nothing was
// deleted.
func (c *cluster) checkKeptCopy(t *testing.T, st map[string]any, want string) {
	t.Helper()
	p := c.keptCopyPG(t, c.a, st)
	if got := p.sql(t, readMoves); got != want {
		t.Errorf("the kept copy holds %q, want host A's writes %q", got, want)
	}
	p.stop(t)
}

// keptCopyPG starts PostgreSQL on h on the one copy of a volume that h
// kept aside (kept_copies in its status st, a path inside the plugin's
// state directory) and returns it, ready.
func (c *cluster) keptCopyPG(t *testing.T, h *host, st map[string]any) *pgContainer {
	t.Helper()
	kept, _ := st["kept_copies"].([]any)
	if len(kept) != 1 {
		t.Fatalf("%s's status lists kept copies %v, want one", h.name, st["kept_copies"])
	}
	inPlugin, _ := kept[0].(string)
	rel, ok := strings.CutPrefix(inPlugin, "/var/lib/portvol/")
	if !ok {
		t.Fatalf("kept copy %q is not under the plugin's state directory", inPlugin)
	}
	onHost := filepath.Join(h.state, rel)
	name := randomName("kept")
	h.docker(t, "run", "-d", "--name", name, "--label", e2eLabel, "--network", "none",
		"-v", onHost+":/var/lib/postgresql/data", pgImage)
	t.Cleanup(func() { h.eng.cli("rm", "-f", name) })
	p := &pgContainer{h: h, name: name}
	p.waitReady(t)
	return p
}

// stringField is a Status field as a string ("" if absent).
func stringField(st map[string]any, key string) string {
	s, _ := st[key].(string)
	return s
}

// waitReleased waits until h's status of vol shows the lease released by
// h and h's copy ready: the final snapshot is published.
func (c *cluster) waitReleased(t *testing.T, h *host, vol string) {
	t.Helper()
	waitFor(t, 5*time.Minute, h.name+" to publish and release "+vol, func() bool {
		st := h.status(t, vol)
		return st["owner"] == h.name && st["lease"] == "released" && st["local"] == "ready"
	})
}

// statusJSON is portvol status VOL --json on h, through socket ("": the
// CLI finds the plugin's socket itself).
func (h *host) statusJSON(t *testing.T, vol, socket string) map[string]any {
	t.Helper()
	out, err := h.portvolAt(socket, "status", vol, "--json")
	if err != nil {
		t.Fatalf("%s: portvol status %s --json: %v\n%s", h.name, vol, err, out)
	}
	var sts []map[string]any
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("%s: portvol status %s --json: %v\n%s", h.name, vol, err, out)
	}
	return sts[0]
}
