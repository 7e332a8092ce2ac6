package integration

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pgImage is the PostgreSQL image the two-host tests build on each engine
// with docker import from this machine's Debian packages (there is no
// registry): testdata/mkpgimage.sh. It also serves as their busybox.
var pgImage = "portvol-e2e-postgres:" + runID

// pgBin is where Debian installs PostgreSQL 15's programs.
const pgBin = "/usr/lib/postgresql/15/bin"

// requirePostgres skips (or, under CI=true, fails) without PostgreSQL 15's
// binaries on the machine.
func requirePostgres(t *testing.T) {
	t.Helper()
	for _, b := range []string{"postgres", "initdb", "psql", "pgbench", "pg_isready", "pg_amcheck"} {
		if _, err := os.Stat(filepath.Join(pgBin, b)); err != nil {
			msg := fmt.Sprintf("needs PostgreSQL 15 (%s/%s) to build the test image: apt-get install postgresql-15", pgBin, b)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// buildPostgresImage writes the image's root filesystem as a tar and
// returns its path.
func buildPostgresImage(t *testing.T) string {
	t.Helper()
	tarPath := filepath.Join(t.TempDir(), "pg.tar")
	out, err := run(context.Background(), "", filepath.Join(repoRoot, "integration", "testdata", "mkpgimage.sh"), tarPath)
	if err != nil {
		t.Fatalf("mkpgimage.sh: %v\n%s", err, out)
	}
	return tarPath
}

// importImage imports the PostgreSQL image into the first host's engine
// and loads that same image into the others', so that it has one id
// everywhere (a swarm service can name it by id, and nothing tries a
// registry); the machine's engine's copy is removed when the test ends
// (private engines go away with their data).
func (c *cluster) importImage(tarPath string) {
	t := c.t
	t.Helper()
	first := c.hosts()[0]
	first.docker(t, "import", "--change", "ENV PATH="+pgBin+":/bin", "--change", `CMD ["/bin/pg-entry"]`, tarPath, pgImage)
	saved := filepath.Join(t.TempDir(), "pg-image.tar")
	if len(c.hosts()) > 1 {
		first.docker(t, "save", "-o", saved, pgImage)
	}
	errs := make(chan error, len(c.hosts()))
	for _, h := range c.hosts()[1:] {
		go func() {
			out, err := h.eng.cli("load", "-q", "-i", saved)
			if err != nil {
				err = fmt.Errorf("%s: docker load: %w\n%s", h.name, err, out)
			}
			errs <- err
		}()
	}
	for range c.hosts()[1:] {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range c.hosts() {
		if h.pe == nil {
			t.Cleanup(func() { h.eng.cli("rmi", "-f", pgImage) })
		}
	}
}

// pgContainer is a PostgreSQL container on one host with a volume as its
// data directory (the cluster is in the subdirectory pgdata).
type pgContainer struct {
	h    *host
	name string
	vol  string
}

// createPG creates (does not start) a PostgreSQL container on the host
// with vol at /var/lib/postgresql/data. nocopy: the image has nothing to
// copy there, and dockerd must not mount the volume at create time.
func (h *host) createPG(t *testing.T, vol string) *pgContainer {
	t.Helper()
	p := &pgContainer{h: h, name: randomName("pg-" + h.name), vol: vol}
	h.docker(t, "create", "--name", p.name, "--label", e2eLabel, "--network", "none", "--stop-timeout", "120",
		"-v", vol+":/var/lib/postgresql/data:nocopy", pgImage)
	t.Cleanup(func() { h.eng.cli("rm", "-f", p.name) })
	return p
}

// start starts the container and returns docker's output: where a Mount
// that portvol refused shows up.
func (p *pgContainer) start() (string, error) {
	out, err := p.h.eng.cli("start", p.name)
	return strings.TrimSpace(out), err
}

// mustStart starts the container and waits until PostgreSQL accepts
// connections.
func (p *pgContainer) mustStart(t *testing.T) {
	t.Helper()
	if out, err := p.start(); err != nil {
		t.Fatalf("%s: docker start %s: %v\n%s", p.h.name, p.name, err, out)
	}
	p.waitReady(t)
}

// ready reports whether PostgreSQL accepts connections.
func (p *pgContainer) ready() bool {
	_, err := p.h.eng.cli("exec", p.name, "pg_isready", "-q", "-h", "/run/postgresql", "-U", "postgres")
	return err == nil
}

// waitReady waits until PostgreSQL accepts connections, and fails the
// test if the container stops first.
func (p *pgContainer) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !p.ready() {
		if state, _ := p.h.eng.cli("inspect", "-f", "{{.State.Status}}", p.name); strings.TrimSpace(state) != "running" {
			logs, _ := p.h.eng.cli("logs", p.name)
			t.Fatalf("%s: PostgreSQL container %s is %s:\n%s", p.h.name, p.name, strings.TrimSpace(state), tail(logs, 3000))
		}
		if time.Now().After(deadline) {
			logs, _ := p.h.eng.cli("logs", p.name)
			ps, _ := p.h.eng.cli("exec", p.name, "ps", "-o", "pid,stat,time,args")
			t.Fatalf("%s: PostgreSQL in %s not ready after 3 min; its log:\n%s\nits processes:\n%s\nthe plugin's events for %s:\n%s",
				p.h.name, p.name, tail(logs, 3000), ps, p.vol, timeline(time.Now().Add(-5*time.Minute), p.vol, p.h))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop is docker stop: SIGTERM, PostgreSQL's smart shutdown.
func (p *pgContainer) stop(t *testing.T) {
	t.Helper()
	p.h.docker(t, "stop", p.name)
}

// sql runs statements with psql over the unix socket and returns the
// unaligned, tuples-only output.
func (p *pgContainer) sql(t *testing.T, query string) string {
	t.Helper()
	return p.h.docker(t, "exec", p.name, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "/run/postgresql", "-U", "postgres", "-c", query)
}

// The moves table records which host wrote each row; rows are a pure
// function of (id, host) so that a test can tell exactly which ones a
// database holds.

const createMoves = `CREATE TABLE moves (id int PRIMARY KEY, host text NOT NULL, note text NOT NULL)`

func insertMoves(from, to int, hostName string) string {
	return fmt.Sprintf(`INSERT INTO moves SELECT g, '%s', 'row ' || g || ' written on %s' FROM generate_series(%d, %d) g`,
		hostName, hostName, from, to)
}

// readMoves asks PostgreSQL for the row count of moves and an md5 over
// every row in order.
const readMoves = `SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || host || ':' || note, ',' ORDER BY id)), '') FROM moves`

// rowSpan is a range of moves rows written by one host.
type rowSpan struct {
	from, to int
	host     string
}

// expectMoves is readMoves' answer for a table holding exactly spans.
func expectMoves(spans ...rowSpan) string {
	var rows []string
	for _, s := range spans {
		for i := s.from; i <= s.to; i++ {
			rows = append(rows, fmt.Sprintf("%d:%s:row %d written on %s", i, s.host, i, s.host))
		}
	}
	if len(rows) == 0 {
		return "0 "
	}
	sum := md5.Sum([]byte(strings.Join(rows, ",")))
	return fmt.Sprintf("%d %s", len(rows), hex.EncodeToString(sum[:]))
}

// createBlobs makes a table of incompressible rows (about 1 KiB each): the
// bulk of a database that compression cannot shrink, so that bytes moved
// show whether a move copied it. VACUUM FREEZE sets the hint bits now;
// otherwise the first reader on the next host would dirty every page.
func (p *pgContainer) createBlobs(t *testing.T, rows int) {
	t.Helper()
	p.sql(t, fmt.Sprintf(`CREATE TABLE blobs AS SELECT g AS id,
		(SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 64) i) AS payload
		FROM generate_series(1, %d) g`, rows))
	p.sql(t, "VACUUM (FREEZE) blobs")
}

// readBlobs is a digest over every row of blobs.
const readBlobs = `SELECT count(*) || ' ' || md5(string_agg(md5(payload), '' ORDER BY id)) FROM blobs`

// readAccounts is a digest over every row of pgbench_accounts.
const readAccounts = `SELECT count(*) || ' ' || sum(abalance) || ' ' || md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts`
