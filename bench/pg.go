package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// pgBin holds Debian's PostgreSQL 15 programs.
const pgBin = "/usr/lib/postgresql/15/bin"

// postgres runs PostgreSQL as the postgres user, listening only on a
// unix socket in its own directory.
type postgres struct {
	r        *runner
	sockDir  string
	uid, gid int
}

func newPostgres(r *runner, work string) (*postgres, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("no postgres user (install Debian's postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	sock := filepath.Join(work, "pgsock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(sock, uid, gid); err != nil {
		return nil, err
	}
	return &postgres{r: r, sockDir: sock, uid: uid, gid: gid}, nil
}

func (p *postgres) as(ctx context.Context, args ...string) error {
	_, err := p.r.must(ctx, "/", nil, append([]string{"runuser", "-u", "postgres", "--"}, args...)...)
	return err
}

// create makes a data directory with a pgbench database of the given
// scale, and stops the server cleanly.
func (p *postgres) create(ctx context.Context, dir string, scale int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dir, p.uid, p.gid); err != nil {
		return err
	}
	if err := p.as(ctx, filepath.Join(pgBin, "initdb"), "-D", dir, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		return err
	}
	if err := p.start(ctx, dir); err != nil {
		return err
	}
	err := p.as(ctx, filepath.Join(pgBin, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-h", p.sockDir, "-U", "postgres", "postgres")
	if serr := p.stop(ctx, dir); err == nil {
		err = serr
	}
	return err
}

// bench runs pgbench against the data directory for the given seconds
// and stops the server cleanly.
func (p *postgres) bench(ctx context.Context, dir string, seconds int) (string, error) {
	if err := p.start(ctx, dir); err != nil {
		return "", err
	}
	out, err := p.r.must(ctx, "/", nil, "runuser", "-u", "postgres", "--", filepath.Join(pgBin, "pgbench"),
		"-c", "2", "-j", "2", "-T", strconv.Itoa(seconds), "-h", p.sockDir, "-U", "postgres", "postgres")
	if serr := p.stop(ctx, dir); err == nil {
		err = serr
	}
	tps := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tps = ") {
			if v, err := strconv.ParseFloat(strings.Fields(l)[2], 64); err == nil {
				tps = strconv.Itoa(int(v + 0.5))
			}
		}
	}
	return tps, err
}

func (p *postgres) start(ctx context.Context, dir string) error {
	return p.as(ctx, filepath.Join(pgBin, "pg_ctl"), "-D", dir, "-w", "-l", filepath.Join(p.sockDir, "postgres.log"),
		"-o", "-k "+p.sockDir+" -c listen_addresses=''", "start")
}

func (p *postgres) stop(ctx context.Context, dir string) error {
	return p.as(ctx, filepath.Join(pgBin, "pg_ctl"), "-D", dir, "-w", "-m", "fast", "stop")
}

// pgVersion is the server's version line.
func pgVersion() string {
	out, err := exec.Command(filepath.Join(pgBin, "postgres"), "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
