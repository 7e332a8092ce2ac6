package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// swarmLong runs TestSwarm's longer variants (make test-swarm-long).
var swarmLong = flag.Bool("swarm.long", false, "TestSwarm: leave a paused start-first update to Swarm (minutes)")

// TestSwarm runs a one-replica PostgreSQL service on a portvol volume in
// a three-node swarm (see swarm) while a client outside the swarm commits
// numbered rows, and moves its task the ways Swarm moves tasks: a drain, a
// restart in place (a forced update and an engine restart), a rolling
// update that starts the new task first, the loss of the task's node
// (power off; -o takeover=auto), a restore longer than one Mount, and a
// node whose plugin is disabled. After each: every row the client saw
// committed is there (after the node loss: all but those committed after
// the last snapshot, which the fenced node kept aside), PostgreSQL never
// served from two nodes at once, and only the task's node has the volume
// mounted.
//
// The subtests share the swarm and the service, in order.
func TestSwarm(t *testing.T) {
	s := newSwarm(t, clusterOptions{
		engines: []string{"node1", "node2", "node3"}, relays: true,
		leaseTTL: 5 * time.Second, mountWait: 8 * time.Second,
	})
	db := s.startDB(t, 5*time.Second)
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Drain", db.testDrain},
		{"RestartInPlace", db.testRestartInPlace},
		{"StartFirstUpdate", db.testStartFirst},
		{"NodeLoss", db.testNodeLoss},
		{"SlowRestore", db.testSlowRestore},
		{"PluginDisabled", db.testPluginDisabled},
		{"ScaleToZero", db.testScaleToZero},
	} {
		// Each step starts where the previous one left the service.
		if !t.Run(step.name, step.run) {
			t.Fatalf("%s failed: the steps after it would start from a broken state", step.name)
		}
	}
}

// swarmDB is the PostgreSQL service, its volume and its client.
type swarmDB struct {
	s        *swarm
	service  string
	vol      string
	interval time.Duration     // the volume's snapshot_interval
	nodes    map[string]string // "address:5432" → host name
	w        *pgWriter
	watch    *pgWatch
	lost     map[int]bool // rows a takeover cut off: no longer expected
	disabled *host        // the node whose plugin NodeLoss disabled
}

// pgServe is the service's command: PostgreSQL listening on the node's
// address (host networking) and trusting every client of the test
// network.
const pgServe = `printf 'local all all trust\nhost all all 0.0.0.0/0 trust\n' > /tmp/hba && exec pg-entry -c listen_addresses=0.0.0.0 -c hba_file=/tmp/hba`

// startDB creates the service and starts the client; both go away with
// the swarm.
func (s *swarm) startDB(t *testing.T, interval time.Duration) *swarmDB {
	t.Helper()
	db := &swarmDB{s: s, service: "db-" + runID, vol: randomName("db"), interval: interval,
		nodes: map[string]string{}, lost: map[int]bool{}}
	var all []string
	for _, h := range s.hosts() {
		db.nodes[h.pe.addr+":5432"] = h.name
		all = append(all, h.name)
	}
	s.allow(t, all...)
	// By id: every node has the same image (loaded from one), and an id
	// sends no node to a registry.
	img := s.hosts()[0].docker(t, "image", "inspect", "-f", "{{.Id}}", pgImage)
	mount := fmt.Sprintf("type=volume,source=%s,target=/var/lib/postgresql/data,volume-driver=%s,volume-nocopy=true,"+
		"volume-opt=takeover=auto,volume-opt=snapshot_interval=%s", db.vol, e2ePlugin, interval)
	s.cliMust(t, "service", "create", "-d", "--name", db.service, "--replicas", "1", "--network", "host",
		"--no-resolve-image", "--constraint", "node.labels."+swarmLabel+"==yes", "--mount", mount,
		"--stop-signal", "SIGINT", "--stop-grace-period", "60s", "--restart-delay", "1s",
		"--container-label", e2eLabel, img, "sh", "-c", pgServe)
	db.watch = startPGWatch(t, db.nodes)
	db.w = startPGWriter(t, db.nodes)
	task := s.waitRunning(t, db.service, 3*time.Minute, func(string) bool { return true })
	db.w.waitAcks(t, time.Minute, task.Node, 20)
	t.Logf("service %s runs on %s; volume %s (takeover=auto, snapshot_interval=%v)", db.service, task.Node, db.vol, interval)
	return db
}

// current is the service's running task.
func (db *swarmDB) current(t *testing.T) swarmTask {
	t.Helper()
	return db.s.waitRunning(t, db.service, 2*time.Minute, func(string) bool { return true })
}

// checkRows fails t if a row the client saw committed is missing (except
// those a takeover cut off).
func (db *swarmDB) checkRows(t *testing.T, since time.Time) {
	t.Helper()
	acks := db.w.acked() // before the read: the client goes on committing
	t.Logf("commits:\n%s", commitLog(acks, since))
	rows := db.w.rows(t)
	var want []pgAck
	for _, a := range acks {
		if !db.lost[a.id] {
			want = append(want, a)
		}
	}
	if m := missing(want, rows); len(m) > 0 {
		t.Errorf("%d of %d committed rows are missing: %s", len(m), len(want), idRanges(m))
	} else {
		t.Logf("all %d committed rows are there", len(want))
	}
}

// checkMounts fails t unless node holds the volume, mounted once, and no
// other node (whose engine is up) has it mounted.
func (db *swarmDB) checkMounts(t *testing.T, node string, skip ...string) {
	t.Helper()
	for _, h := range db.s.hosts() {
		if slices.Contains(skip, h.name) || h == db.disabled {
			continue
		}
		st := h.status(t, db.vol)
		n, _ := st["mounts"].(float64)
		switch {
		case h.name == node && (n != 1 || st["local"] != "mounted" || st["owner"] != node || st["lease"] != "held"):
			t.Errorf("%s runs the task: mounts %v, local %v, owner %v, lease %v; want 1, mounted, %s, held", h.name, n, st["local"], st["owner"], st["lease"], node)
		case h.name != node && (n != 0 || st["local"] == "mounted"):
			t.Errorf("%s does not run the task but has the volume: mounts %v, local %v", h.name, n, st["local"])
		}
	}
}

// Drain the task's node: the task comes up on another node with every
// committed row. The downtime is from the last commit acknowledged on the
// old node to the first on the new one.
func (db *swarmDB) testDrain(t *testing.T) {
	s := db.s
	from := db.current(t)
	db.w.waitAcks(t, time.Minute, from.Node, 10)
	t0 := time.Now()
	s.cliMust(t, "node", "update", "--availability", "drain", s.ids[from.Node])
	to := s.waitRunning(t, db.service, 2*time.Minute, func(n string) bool { return n != from.Node })
	db.w.waitAcks(t, time.Minute, to.Node, 10)
	before, after, ok := handover(db.w.acked(), t0)
	if !ok {
		t.Fatalf("no handover from %s to %s in the client's commits", from.Node, to.Node)
	}
	t.Logf("drain %s → %s: downtime %v (last commit on %s %s, first on %s %s)", from.Node, to.Node,
		after.at.Sub(before.at).Round(time.Millisecond), before.node, before.at.Format("15:04:05.000"), after.node, after.at.Format("15:04:05.000"))
	t.Logf("plugin events:\n%s", timeline(t0, db.vol, s.host(from.Node), s.host(to.Node)))
	db.checkRows(t, t0)
	db.checkMounts(t, to.Node)
	db.watch.check(t)
	s.cliMust(t, "node", "update", "--availability", "active", s.ids[from.Node])
}

// A forced update that lands on the same node (the service is pinned
// there), then an engine restart on that node: no double mount, no lost
// row, no stuck lease.
func (db *swarmDB) testRestartInPlace(t *testing.T) {
	s := db.s
	cur := db.current(t)
	h := s.host(cur.Node)
	s.allow(t, cur.Node)
	db.w.waitAcks(t, time.Minute, cur.Node, 10)

	t0 := time.Now()
	s.cliMust(t, "service", "update", "-d", "--force", db.service)
	task := s.waitRunning(t, db.service, 2*time.Minute, func(n string) bool { return n == cur.Node }, cur.ID)
	db.w.waitAcks(t, time.Minute, cur.Node, 10)
	t.Logf("forced update on %s: longest pause between commits %v", cur.Node, longestGap(db.w.acked(), t0))
	t.Logf("plugin events:\n%s", timeline(t0, db.vol, h))
	db.checkRows(t, t0)
	db.checkMounts(t, cur.Node)

	t0 = time.Now()
	s.setDown(h, true)
	h.pe.restartDockerd()
	s.setDown(h, false)
	s.waitRunning(t, db.service, 3*time.Minute, func(n string) bool { return n == cur.Node }, task.ID)
	db.w.waitAcks(t, time.Minute, cur.Node, 10)
	t.Logf("engine restart on %s: longest pause between commits %v", cur.Node, longestGap(db.w.acked(), t0))
	t.Logf("plugin events:\n%s", timeline(t0, db.vol, h))
	db.checkRows(t, t0)
	db.checkMounts(t, cur.Node)
	db.watch.check(t)
}

// longestGap is the longest time between two acknowledged commits after
// since.
func longestGap(acks []pgAck, since time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].at.After(since) {
			gap = max(gap, acks[i].at.Sub(acks[i-1].at))
		}
	}
	return gap
}

// A rolling update with --update-order start-first: the new task starts
// (on another node) while the old one runs. Its Mount waits, then fails
// naming the holder; a new task placed on the old task's node mounts
// there (one host) but PostgreSQL's own lock refuses it. There is never a
// second writer, and the old task keeps serving: Swarm pauses the update
// (its default --update-failure-action). Switching the service to
// stop-first, what the README recommends for one-writer volumes, then
// completes it with every row. (-swarm.long instead leaves the paused
// update to Swarm and reports when, if ever, the new spec runs.)
func (db *swarmDB) testStartFirst(t *testing.T) {
	s := db.s
	cur := db.current(t)
	var other string
	for _, h := range s.hosts() {
		if h.name != cur.Node && h != db.disabled {
			other = h.name
			break
		}
	}
	s.allow(t, cur.Node, other)
	t0 := time.Now()
	s.cliMust(t, "service", "update", "-d", "--update-order", "start-first", "--force", db.service)
	updateState := func() string {
		return s.cliMust(t, "service", "inspect", "-f", "{{if .UpdateStatus}}{{.UpdateStatus.State}}: {{.UpdateStatus.Message}}{{end}}", db.service)
	}
	var state string
	waitFor(t, 2*time.Minute, "Swarm to pause the start-first update", func() bool {
		state = updateState()
		return strings.HasPrefix(state, "paused")
	})
	t.Logf("+%v update %s", time.Since(t0).Round(100*time.Millisecond), state)
	held := false
	for _, e := range s.failures(t, db.service) {
		if strings.HasPrefix(e, other) && strings.Contains(e, `held by host "`+cur.Node+`"`) {
			held = true
		}
	}
	if !held {
		t.Errorf("no task on %s failed with portvol naming the holder %s:\n%s", other, cur.Node, strings.Join(s.failures(t, db.service), "\n"))
	}
	if task, ok := s.running(t, db.service); !ok || task.ID != cur.ID {
		t.Errorf("the old task does not run any more: %+v", task)
	}
	db.w.waitAcks(t, time.Minute, cur.Node, 10) // it still commits

	if *swarmLong {
		waitFor(t, 5*time.Minute, "Swarm to run the new spec on its own", func() bool {
			task, ok := s.running(t, db.service)
			return ok && task.ID != cur.ID
		})
		t.Logf("+%v Swarm runs the new spec on its own; update %s", time.Since(t0).Round(100*time.Millisecond), updateState())
	} else {
		t1 := time.Now()
		s.cliMust(t, "service", "update", "-d", "--update-order", "stop-first", db.service)
		waitFor(t, 2*time.Minute, "the stop-first update to complete", func() bool {
			task, ok := s.running(t, db.service)
			return ok && task.ID != cur.ID && strings.HasPrefix(updateState(), "completed")
		})
		t.Logf("+%v update %s, %v after switching to stop-first", time.Since(t0).Round(100*time.Millisecond), updateState(), time.Since(t1).Round(100*time.Millisecond))
	}
	now := db.current(t)
	db.w.waitAcks(t, time.Minute, now.Node, 10)
	t.Logf("tasks:\n%s", s.history(t, db.service))
	t.Logf("start-first update: longest pause between commits %v", longestGap(db.w.acked(), t0))
	t.Logf("plugin events:\n%s", timeline(t0, db.vol, s.host(cur.Node), s.host(other)))
	db.checkRows(t, t0)
	db.checkMounts(t, now.Node)
	db.watch.check(t)
}

// snapshotInfo is one snapshot as portvol snapshots --json lists it.
type snapshotInfo struct {
	ID                string
	Head              bool
	Host              string
	Generation        int
	Started, Finished time.Time
}

// snapshots lists the volume's snapshots from the store (the CLI on the
// machine, with the store's credentials).
func (db *swarmDB) snapshots(t *testing.T) []snapshotInfo {
	t.Helper()
	c := db.s.cluster
	out, err := runEnv(context.Background(), []string{"AWS_ACCESS_KEY_ID=" + c.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.s3.SecretKey}, "",
		repoRoot+"/build/portvol", "snapshots", "--store", c.s3.storeURL(c.prefix, c.s3.Addr()), db.vol, "--json")
	if err != nil {
		t.Fatalf("portvol snapshots: %v\n%s", err, out)
	}
	var infos []snapshotInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("portvol snapshots --json: %v\n%s", err, out)
	}
	return infos
}

// The task's node loses power (every process of it killed at once) while
// the client commits. Swarm reschedules the task; the new node takes the
// volume over once the lease has gone unrenewed for a TTL
// (takeover=auto) and serves the newest snapshot: what is lost is exactly
// what was committed after that snapshot, and docker volume inspect says
// so. The lost node comes back fenced: its copy (with every row) is kept
// aside, and it publishes nothing.
//
// The third node's plugin is disabled first: the task can only go to the
// one node left, and PluginDisabled uses that node later.
func (db *swarmDB) testNodeLoss(t *testing.T) {
	s := db.s
	cur := db.current(t)
	victim := s.host(cur.Node)
	var all []string
	for _, h := range s.hosts() {
		all = append(all, h.name)
	}
	s.allow(t, all...)
	for _, h := range s.hosts() {
		if h != victim && db.disabled == nil {
			db.disabled = h
			h.docker(t, "plugin", "disable", "-f", e2ePlugin)
		}
	}
	// A few snapshot intervals of commits on the victim.
	db.w.waitAcks(t, time.Minute, victim.name, 10)
	time.Sleep(2*db.interval + time.Second)
	gen := victim.status(t, db.vol)["generation"]

	crash := time.Now()
	s.setDown(victim, true)
	victim.pe.powerOff()
	t.Logf("%s powered off at %s", victim.name, crash.Format("15:04:05.000"))
	to := s.waitRunning(t, db.service, 3*time.Minute, func(n string) bool { return n != victim.name })
	if to.Node == db.disabled.name {
		t.Errorf("the task went to %s, whose plugin is disabled", to.Node)
	}
	db.w.waitAcks(t, time.Minute, to.Node, 10)
	acks := db.w.acked()
	_, after, _ := handover(acks, crash)
	t.Logf("%s took over: first commit there %v after the power-off", to.Node, after.at.Sub(crash).Round(time.Millisecond))

	// What the new node has of the victim's commits: a prefix of them.
	// Every acknowledgement from the victim counts, also one that reached
	// the client after crash was taken (row 1750 of one run, in the same
	// millisecond, answered before the processes were stopped): the
	// victim is off until after these acks were read.
	var onVictim []pgAck
	for _, a := range acks {
		if a.node == victim.name {
			onVictim = append(onVictim, a)
		}
	}
	rows := db.w.rows(t)
	var kept, lost []pgAck
	for _, a := range onVictim {
		if rows[a.id] {
			if len(lost) > 0 {
				t.Errorf("row %d (committed on %s at %s) is there, but row %d, committed before it, is not: not a snapshot",
					a.id, victim.name, a.at.Format("15:04:05.000"), lost[0].id)
			}
			kept = append(kept, a)
		} else {
			lost = append(lost, a)
		}
	}
	for _, a := range lost {
		db.lost[a.id] = true
	}
	st := s.host(to.Node).status(t, db.vol)
	note := stringField(st, "taken_over")
	var head snapshotInfo
	for _, sn := range db.snapshots(t) {
		if strings.Contains(note, sn.ID) {
			head = sn
		}
	}
	if head.ID == "" || !strings.Contains(note, victim.name) {
		t.Fatalf("%s's status does not say what the takeover from %s lost (taken_over %q)", to.Node, victim.name, note)
	}
	t.Logf("%s's status: %s", to.Node, note)
	if head.Host != victim.name {
		t.Errorf("the takeover restored snapshot %s by %s, want the newest by %s", head.ID, head.Host, victim.name)
	}
	// The snapshot holds every commit acknowledged before it started and
	// none sent after it finished.
	for _, a := range onVictim {
		if a.at.Before(head.Started) && !rows[a.id] {
			t.Errorf("row %d, committed at %s before snapshot %s started (%s), is lost", a.id,
				a.at.Format("15:04:05.000"), head.ID, head.Started.Format("15:04:05.000"))
		}
		if a.sent.After(head.Finished) && rows[a.id] {
			t.Errorf("row %d, sent at %s after snapshot %s finished (%s), is there", a.id,
				a.sent.Format("15:04:05.000"), head.ID, head.Finished.Format("15:04:05.000"))
		}
	}
	if len(lost) > 0 {
		t.Logf("node loss: %d rows lost (%s), committed from %s to %s; snapshot %s started %s, %v before the power-off (snapshot_interval %v); %d rows kept",
			len(lost), idRanges(ids(lost)), lost[0].at.Format("15:04:05.000"), lost[len(lost)-1].at.Format("15:04:05.000"),
			head.ID, head.Started.Format("15:04:05.000"), crash.Sub(head.Started).Round(time.Millisecond), db.interval, len(kept))
	} else {
		t.Logf("node loss: nothing lost; snapshot %s started %v before the power-off", head.ID, crash.Sub(head.Started).Round(time.Millisecond))
	}
	db.checkRows(t, crash)
	db.checkMounts(t, to.Node, victim.name)

	// The victim comes back: fenced, its copy aside with every row, and
	// nothing from it reaches the store.
	victim.pe.powerOn()
	s.setDown(victim, false)
	var vst map[string]any
	waitFor(t, 2*time.Minute, victim.name+" to find itself fenced", func() bool {
		out, err := victim.eng.cli("volume", "inspect", "-f", "{{json .Status}}", db.vol)
		return err == nil && json.Unmarshal([]byte(out), &vst) == nil && vst["local"] == "diverged"
	})
	t.Logf("%s after power-on: local %v, owner %v, last_error %v", victim.name, vst["local"], vst["owner"], vst["last_error"])
	if vst["owner"] != to.Node {
		t.Errorf("%s's status names owner %v, want %s", victim.name, vst["owner"], to.Node)
	}
	keptRows := db.keptCopyRows(t, victim, vst)
	if m := missing(onVictim, keptRows); len(m) > 0 {
		t.Errorf("the copy %s kept aside lacks rows it committed: %s", victim.name, idRanges(m))
	}
	for _, sn := range db.snapshots(t) {
		if sn.Host == victim.name && sn.Started.After(crash) {
			t.Errorf("fenced %s published snapshot %s (generation %d) after it came back", victim.name, sn.ID, sn.Generation)
		}
	}
	t.Logf("%s held generation %v; its kept copy has all %d rows it committed", victim.name, gen, len(onVictim))
	db.watch.check(t)
}

func ids(acks []pgAck) []int {
	var out []int
	for _, a := range acks {
		out = append(out, a.id)
	}
	return out
}

// keptCopyRows starts PostgreSQL on the copy h kept aside (kept_copies in
// its status st) and returns the ids it holds.
func (db *swarmDB) keptCopyRows(t *testing.T, h *host, st map[string]any) map[int]bool {
	t.Helper()
	p := h.c.keptCopyPG(t, h, st)
	out := p.sql(t, "SELECT id FROM "+pgTable)
	p.stop(t)
	rows := map[int]bool{}
	for _, f := range strings.Fields(out) {
		var id int
		fmt.Sscan(f, &id)
		rows[id] = true
	}
	return rows
}

// A restore longer than one Mount: the node the task moves to fetches
// the volume (grown by some 18 MB it cannot compress) through a link of
// 1.2 MiB/s (a restore of about 30 s). Its first Mount fails with "restoring ... try again shortly";
// Swarm's retries succeed once the restore is done, and the restore ran
// once: it resumed, it did not start over.
func (db *swarmDB) testSlowRestore(t *testing.T) {
	s := db.s
	cur := db.current(t)
	var target *host
	for _, h := range s.hosts() {
		if h.name != cur.Node && h != db.disabled {
			target = h
		}
	}
	if target == nil {
		t.Fatal("no node to move to")
	}
	db.grow(t, 18000)
	target.relay.setRate(1200 << 10)
	t.Cleanup(func() { target.relay.setRate(0) })
	_, down0 := target.relay.counters()
	t0 := time.Now()
	s.allow(t, target.name)
	s.waitRunning(t, db.service, 4*time.Minute, func(n string) bool { return n == target.name })
	_, down1 := target.relay.counters()
	target.relay.setRate(0)
	db.w.waitAcks(t, time.Minute, target.name, 10)
	before, after, _ := handover(db.w.acked(), t0)
	t.Logf("slow move %s → %s: downtime %v, %d MB fetched", cur.Node, target.name, after.at.Sub(before.at).Round(time.Millisecond), (down1-down0)/1e6)
	t.Logf("plugin events:\n%s", timeline(t0, db.vol, s.host(cur.Node), target))
	restoring := false
	for _, e := range s.failures(t, db.service) {
		if strings.HasPrefix(e, target.name) && strings.Contains(e, "restoring") && strings.Contains(e, "try again shortly") {
			restoring = true
			t.Logf("a task failed: %s", e)
		}
	}
	if !restoring {
		t.Errorf("no task on %s failed with \"restoring ... try again shortly\":\n%s", target.name, strings.Join(s.failures(t, db.service), "\n"))
	}
	starts := 0
	var restored map[string]any
	for _, e := range target.pluginEvents("", db.vol) {
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e["time"]))
		switch {
		case at.Before(t0):
		case e["msg"] == "restoring":
			starts++
		case e["msg"] == "restored":
			restored = e
		}
	}
	fetched := number(restored["fetched"])
	if starts != 1 || restored == nil {
		t.Errorf("%s started %d restores (and finished: %v), want one that resumed across Mounts", target.name, starts, restored != nil)
	}
	if float64(down1-down0) > 1.5*fetched {
		t.Errorf("%s fetched %d bytes for a restore of %.0f: the restore started over", target.name, down1-down0, fetched)
	}
	db.checkRows(t, t0)
	db.checkMounts(t, target.name)
	db.watch.check(t)
}

// grow adds rows of incompressible data (about 1 KiB each) to the
// database, through the client's own connection to it.
func (db *swarmDB) grow(t *testing.T, rows int) {
	t.Helper()
	waitFor(t, 2*time.Minute, "the database to grow", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, _, err := db.w.connect(ctx)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS ballast AS SELECT g AS id,
			(SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 64) i) AS payload
			FROM generate_series(1, %d) g`, rows))
		return err == nil
	})
}

// A node whose plugin is disabled gets no task that needs the volume: with
// the service constrained to it, the task stays pending and says why; once
// the plugin is enabled again, the task runs there with every row.
func (db *swarmDB) testPluginDisabled(t *testing.T) {
	s := db.s
	z := db.disabled
	if z == nil {
		t.Fatal("NodeLoss disabled no plugin")
	}
	waitFor(t, time.Minute, "the swarm to see that "+z.name+"'s plugin is disabled", func() bool {
		out := s.cliMust(t, "node", "inspect", "-f", "{{range .Description.Engine.Plugins}}{{.Type}}={{.Name}} {{end}}", s.ids[z.name])
		return !strings.Contains(out, "Volume="+e2ePlugin)
	})
	s.allow(t, z.name)
	var pending string
	waitFor(t, time.Minute, "a pending task that says why", func() bool {
		for _, task := range s.tasks(t, db.service) {
			if task.DesiredState == "Running" && strings.HasPrefix(task.CurrentState, "Pending") && task.Error != "" {
				pending = task.Error
				return true
			}
		}
		return false
	})
	t.Logf("pending: %s", pending)
	if !strings.Contains(pending, "plugin") {
		t.Errorf("the pending task does not say that the plugin is missing: %s", pending)
	}
	time.Sleep(2 * time.Second)
	if task, ok := s.running(t, db.service); ok {
		t.Errorf("the task runs on %s, with %s the only node allowed, whose plugin is disabled", task.Node, z.name)
	}
	t0 := time.Now()
	z.docker(t, "plugin", "enable", e2ePlugin)
	s.waitRunning(t, db.service, 2*time.Minute, func(n string) bool { return n == z.name })
	db.w.waitAcks(t, time.Minute, z.name, 10)
	t.Logf("%s runs the task %v after its plugin was enabled", z.name, time.Since(t0).Round(100*time.Millisecond))
	db.checkRows(t, t0)
	db.checkMounts(t, z.name)
	db.watch.check(t)
}

// Scaled to zero, the service's last node publishes and lets go: no lease
// stays held.
func (db *swarmDB) testScaleToZero(t *testing.T) {
	s := db.s
	cur := db.current(t)
	h := s.host(cur.Node)
	db.w.stop()
	s.cliMust(t, "service", "scale", "-d", db.service+"=0")
	s.waitReleased(t, h, db.vol)
	for _, o := range s.hosts() {
		if n, _ := o.status(t, db.vol)["mounts"].(float64); n != 0 {
			t.Errorf("%s still counts %v mounts of the volume after the service scaled to zero", o.name, n)
		}
	}
}
