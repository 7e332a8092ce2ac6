package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireCompose skips (or, under CI=true, fails) without docker-compose.
func requireCompose(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		msg := "needs docker-compose: apt-get install docker-compose"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// testCompose moves contrib/compose/compose.yaml's PostgreSQL from host A
// to host B the way its comments say: up, write, down on A; volume create
// with the same options, up, read on B. The machine's docker-compose runs
// the file as shipped, with testdata/compose.test.yaml on top for the
// image and the network.
func (c *cluster) testCompose(t *testing.T) {
	requireCompose(t)
	vol := randomName("compose")
	project := strings.ReplaceAll(randomName("pvc"), "-", "")
	env := []string{
		"PG_IMAGE=" + pgImage, "E2E_LABEL=" + e2eLabel, "POSTGRES_PASSWORD=unused-by-the-test-image",
		"PGDATA_VOLUME=" + vol, "PORTVOL_DRIVER=" + e2ePlugin + ":latest",
	}
	files := []string{"-f", filepath.Join(repoRoot, "contrib", "compose", "compose.yaml"),
		"-f", filepath.Join(repoRoot, "integration", "testdata", "compose.test.yaml"), "-p", project}
	compose := func(h *host, args ...string) string {
		t.Helper()
		out, err := runEnv(context.Background(), append(h.eng.env(), env...), "", "docker-compose", append(files, args...)...)
		if err != nil {
			t.Fatalf("%s: docker-compose %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	t.Cleanup(func() {
		for _, h := range []*host{c.b, c.a} {
			runEnv(context.Background(), append(h.eng.env(), env...), "", "docker-compose", append(files, "down", "-t", "30")...)
			h.eng.cli("volume", "rm", "-f", vol)
		}
	})
	// The database is reached with docker exec in the container compose
	// made: each docker-compose call costs a second of Python start-up.
	start := time.Now()
	up := func(h *host) *pgContainer {
		t.Helper()
		compose(h, "up", "-d")
		p := &pgContainer{h: h, name: compose(h, "ps", "-q", "db"), vol: vol}
		p.waitReady(t)
		t.Logf("%s: docker-compose up, PostgreSQL ready after %v", h.name, time.Since(start).Round(time.Millisecond))
		return p
	}

	// A: up creates the volume with the file's options, then the database.
	pa := up(c.a)
	if st := c.a.status(t, vol); st["snapshot_interval"] != "5m0s" || st["takeover"] != "manual" {
		t.Errorf("the volume's options on A: %v, want the file's driver_opts", st)
	}
	pa.sql(t, createMoves)
	pa.sql(t, insertMoves(1, 500, "compose-a"))
	want := expectMoves(rowSpan{1, 500, "compose-a"})
	compose(c.a, "down")
	waitFor(t, time.Minute, "A's final snapshot published and the volume released", func() bool {
		st := c.a.status(t, vol)
		return st["lease"] == "released" && st["local"] == "ready"
	})
	t.Logf("A: down and released after %v", time.Since(start).Round(time.Millisecond))

	// B: the same options first (the volume exists in the store; dockerd on
	// B only learns them this way), then the same file.
	c.b.docker(t, "volume", "create", "-d", e2ePlugin, "-o", "snapshot_interval=5m", "-o", "takeover=manual", vol)
	pb := up(c.b)
	if got := pb.sql(t, readMoves); got != want {
		t.Errorf("B reads %q after the move, want %q (A's 500 rows)", got, want)
	}
	if st := c.b.status(t, vol); st["owner"] != "hostB" || st["lease"] != "held" {
		t.Errorf("B runs the database but the volume's status is %v", st)
	}
}
