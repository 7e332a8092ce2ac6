package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// restoreMode says what a restore starts from.
type restoreMode int

const (
	restoreCold    restoreMode = iota // empty target, no local caches
	restorePrepare                    // lay down the previous copy (not measured)
	restoreOnto                       // the target holds the copy restorePrepare made
)

// tool is one of the programs compared.
type tool interface {
	Name() string
	// Setup makes a fresh, empty repository in bucket/prefix.
	Setup(ctx context.Context, bucket, prefix string) error
	// Snapshot snapshots dir and returns the measure and an ID for Restore.
	Snapshot(ctx context.Context, dir string) (measure, string, error)
	// Restore restores snapshot id into dst, timed until dst is on disk.
	Restore(ctx context.Context, id, dst string, mode restoreMode) (measure, error)
	// Stored is the number of bytes in the repository.
	Stored() int64
}

// env is what every tool shares.
type env struct {
	r    *runner
	srv  *s3Server
	work string // per tool scratch space (caches, stat caches)
	self string // this program, for s3put / s3get
}

func (e *env) scratch(name string) (string, error) {
	d := filepath.Join(e.work, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o700)
}

// timedSync adds the syncfs of dst to m: every tool's restore counts
// until its data is durable (portvol syncs itself; the others do not).
func timedSync(m measure, dst string) (measure, error) {
	t := time.Now()
	err := syncFS(dst)
	m.Wall += time.Since(t)
	return m, err
}

// ---- portvol ----

type portvolTool struct {
	*env
	bin         string
	encrypted   bool
	compression string // portvol init --compression, if set
	keyFile     string
	bucket      string
	prefix      string
	tmp         string
	base        string // import --base, in the pg-btrfs workload
}

func (t *portvolTool) Name() string {
	if t.encrypted {
		return "portvol (encrypted)"
	}
	return "portvol (plain)"
}

func (t *portvolTool) Setup(ctx context.Context, bucket, prefix string) error {
	t.bucket, t.prefix = bucket, prefix
	d, err := t.scratch("portvol-" + prefix)
	if err != nil {
		return err
	}
	t.tmp = d
	if t.encrypted {
		t.keyFile = filepath.Join(d, "key")
		if err := os.WriteFile(t.keyFile, []byte(randomHex(32)+"\n"), 0o600); err != nil {
			return err
		}
	}
	// As restic init: the store exists before the first import.
	a := t.args("init")
	if t.compression != "" {
		a = append(a, "--compression", t.compression)
	}
	_, err = t.r.must(ctx, "/", t.srv.env(), a...)
	return err
}

func (t *portvolTool) args(cmd string) []string {
	url := fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s", t.bucket, t.prefix, t.srv.endpoint(), region)
	a := []string{t.bin, cmd, "--store", url, "--json"}
	if t.encrypted {
		a = append(a, "--encryption-key-file", t.keyFile)
	}
	return a
}

func (t *portvolTool) Snapshot(ctx context.Context, dir string) (measure, string, error) {
	a := append(t.args("import"), "--host-id", "bench", "--stat-cache", filepath.Join(t.tmp, "import.statcache"), dir, "vol")
	if t.base != "" {
		a = append(a, "--base", t.base)
	}
	m, out, err := t.r.run(ctx, cmd("/", t.srv.env(), a...))
	if err != nil {
		return m, "", err
	}
	var res struct {
		Snapshot string `json:"snapshot"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Snapshot == "" {
		return m, "", fmt.Errorf("portvol import printed %q", out)
	}
	return m, res.Snapshot, nil
}

func (t *portvolTool) Restore(ctx context.Context, id, dst string, mode restoreMode) (measure, error) {
	a := append(t.args("export"), "--snapshot", id)
	sc := filepath.Join(t.tmp, "export.statcache")
	switch mode {
	case restorePrepare:
		os.Remove(sc)
		a = append(a, "--stat-cache", sc)
	case restoreOnto:
		a = append(a, "--stat-cache", sc, "--force")
	}
	m, _, err := t.r.run(ctx, cmd("/", t.srv.env(), append(a, "vol", dst)...))
	if err != nil {
		return m, err
	}
	return timedSync(m, dst)
}

func (t *portvolTool) Stored() int64 { return t.srv.prefixSize(t.bucket, t.prefix) }

// ---- restic ----

type resticTool struct {
	*env
	bucket, prefix string
	password       string
	cache          string
}

func (t *resticTool) Name() string { return "restic" }

func (t *resticTool) environ(cache string) []string {
	return append(t.srv.env(),
		"RESTIC_REPOSITORY=s3:"+t.srv.endpoint()+"/"+t.bucket+"/"+t.prefix,
		"RESTIC_PASSWORD="+t.password, "RESTIC_CACHE_DIR="+cache)
}

func (t *resticTool) Setup(ctx context.Context, bucket, prefix string) error {
	t.bucket, t.prefix, t.password = bucket, prefix, randomHex(16)
	d, err := t.scratch("restic-" + prefix)
	if err != nil {
		return err
	}
	t.cache = filepath.Join(d, "cache")
	_, err = t.r.must(ctx, "/", t.environ(t.cache), "restic", "init", "--repository-version", "2")
	return err
}

// Snapshot backs up "." from inside dir, so that a restore puts the
// files straight into its target.
func (t *resticTool) Snapshot(ctx context.Context, dir string) (measure, string, error) {
	m, out, err := t.r.run(ctx, cmd(dir, t.environ(t.cache), "restic", "backup", "--json", "--host", "bench", "."))
	if err != nil {
		return m, "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var msg struct {
			Type string `json:"message_type"`
			ID   string `json:"snapshot_id"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Type == "summary" && msg.ID != "" {
			return m, msg.ID, nil
		}
	}
	return m, "", fmt.Errorf("restic backup printed no summary")
}

func (t *resticTool) Restore(ctx context.Context, id, dst string, mode restoreMode) (measure, error) {
	cache := t.cache
	if mode == restoreCold {
		// A new host: no local cache at all.
		d, err := t.scratch("restic-" + t.prefix + "-coldcache")
		if err != nil {
			return measure{}, err
		}
		cache = d
		defer os.RemoveAll(d)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return measure{}, err
	}
	m, _, err := t.r.run(ctx, cmd("/", t.environ(cache), "restic", "restore", id, "--target", dst))
	if err != nil {
		return m, err
	}
	return timedSync(m, dst)
}

func (t *resticTool) Stored() int64 { return t.srv.prefixSize(t.bucket, t.prefix) }

// ---- tar | zstd | PUT ----

type tarTool struct {
	*env
	bucket, prefix string
	n              int
}

func (t *tarTool) Name() string { return "tar | zstd | PUT" }

func (t *tarTool) Setup(_ context.Context, bucket, prefix string) error {
	t.bucket, t.prefix, t.n = bucket, prefix, 0
	return nil
}

// Snapshot archives the whole tree every time: tar has no incremental
// mode that restores without its predecessors.
func (t *tarTool) Snapshot(ctx context.Context, dir string) (measure, string, error) {
	t.n++
	key := fmt.Sprintf("%s/%d.tar.zst", t.prefix, t.n)
	m, _, err := t.r.pipeline(ctx,
		cmd("/", nil, "tar", "-C", dir, "-cf", "-", "."),
		cmd("/", nil, "zstd", "-1", "-T0", "-q", "-c"),
		cmd("/", t.srv.env(), t.self, "s3put", t.srv.addr, t.bucket, key))
	return m, key, err
}

func (t *tarTool) Restore(ctx context.Context, key, dst string, _ restoreMode) (measure, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return measure{}, err
	}
	m, _, err := t.r.pipeline(ctx,
		cmd("/", t.srv.env(), t.self, "s3get", t.srv.addr, t.bucket, key),
		cmd("/", nil, "zstd", "-d", "-q", "-c"),
		cmd("/", nil, "tar", "-C", dst, "-xf", "-"))
	if err != nil {
		return m, err
	}
	return timedSync(m, dst)
}

func (t *tarTool) Stored() int64 { return t.srv.prefixSize(t.bucket, t.prefix) }
