package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// pg runs PostgreSQL as the postgres user on a unix socket of its own.
type pg struct {
	sock     string
	log      *os.File
	uid, gid int
}

func newPG(work string, log *os.File) (*pg, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("no postgres user (apt-get install postgresql-15): %w", err)
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
	return &pg{sock: sock, log: log, uid: uid, gid: gid}, nil
}

func (p *pg) as(ctx context.Context, args ...string) (string, error) {
	c := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	var out bytes.Buffer
	c.Stdout = &out
	c.Stderr = p.log
	c.Dir = "/"
	err := c.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// initData makes a pgbench database of the given scale in dir, stopped.
func (p *pg) initData(ctx context.Context, dir string, scale int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dir, p.uid, p.gid); err != nil {
		return err
	}
	if _, err := p.as(ctx, filepath.Join(pgBin, "initdb"), "-D", dir, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		return err
	}
	if err := p.start(ctx, dir, nil); err != nil {
		return err
	}
	_, err := p.as(ctx, filepath.Join(pgBin, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-h", p.sock, "-U", "postgres", "postgres")
	if serr := p.stop(ctx, dir); err == nil {
		err = serr
	}
	return err
}

func (p *pg) start(ctx context.Context, dir string, settings []string) error {
	opts := "-k " + p.sock + " -c listen_addresses=''"
	for _, s := range settings {
		opts += " -c " + s
	}
	_, err := p.as(ctx, filepath.Join(pgBin, "pg_ctl"), "-D", dir, "-w", "-l", filepath.Join(p.sock, "postgres.log"), "-o", opts, "start")
	return err
}

func (p *pg) stop(ctx context.Context, dir string) error {
	_, err := p.as(ctx, filepath.Join(pgBin, "pg_ctl"), "-D", dir, "-w", "-m", "fast", "stop")
	return err
}

// pgbench runs the TPC-B-like load and returns tps. logPrefix, if set,
// writes per-transaction latency logs (pgbench -l) there.
func (p *pg) pgbench(ctx context.Context, clients, seconds int, logPrefix string) (float64, error) {
	args := []string{filepath.Join(pgBin, "pgbench"), "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(seconds),
		"-h", p.sock, "-U", "postgres"}
	if logPrefix != "" {
		args = append(args, "-l", "--log-prefix", logPrefix)
	}
	out, err := p.as(ctx, append(args, "postgres")...)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tps = ") {
			return strconv.ParseFloat(strings.Fields(l)[2], 64)
		}
	}
	return 0, fmt.Errorf("no tps in pgbench output: %q", out)
}
