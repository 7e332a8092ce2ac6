package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"github.com/portvol/portvol/transfer/s3"
)

// cli runs one portvol command line in-process.
type cliResult struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	return cliCtx(t, context.Background(), args...)
}

func cliCtx(t *testing.T, ctx context.Context, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok fails the test unless the command exited 0.
func (r cliResult) ok(t *testing.T) cliResult {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks the exit code and that stderr says each of want.
func (r cliResult) fails(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}

// initStore creates the store at url with portvol init, as a user does
// before the first import.
func initStore(t *testing.T, url string, extra ...string) {
	t.Helper()
	cli(t, append([]string{"init", "--store", url}, extra...)...).ok(t)
}

// testStore is a store the commands reach by URL and the test by value.
type testStore struct {
	url   string
	store transfer.ObjectStore
}

func localStore(t *testing.T) testStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	st, err := localdir.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testStore{url: "file://" + dir, store: st}
}

// s3Store starts a local S3 server and points the process environment
// at its credentials.
func s3Store(t *testing.T) (testStore, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	prefix := srv.Prefix(t)
	st, err := s3.New(context.Background(), s3.Options{
		Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket, Prefix: prefix,
		AccessKey: srv.AccessKey, SecretKey: transfer.Secret(srv.SecretKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	return testStore{url: srv.URL(prefix), store: st}, srv
}

// head reads a volume's head record straight from the store.
func head(t *testing.T, st transfer.ObjectStore, volume string) lease.Observation {
	t.Helper()
	m, err := lease.New(st, lease.Options{Host: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := m.Inspect(context.Background(), volume)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// makeTree writes a small tree with a large-ish file, a subdirectory, a
// symlink, an empty file and modes worth keeping.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 3<<20+123)
	_, _ = rand.Read(big)
	files := map[string][]byte{
		"PG_VERSION":        []byte("15\n"),
		"base/1/1259":       bytes.Repeat([]byte("page"), 8192),
		"base/1/big":        big,
		"global/pg_control": {1, 2, 3},
		"empty":             nil,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("base/1/1259", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
}

// treeOf describes every entry of a tree: type, mode, content or target.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %x", len(data), hashOf(data))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hashOf(b []byte) [8]byte {
	var h [8]byte
	for i, c := range b {
		h[i%8] = h[i%8]*31 + c
	}
	return h
}

func sameTree(t *testing.T, want, got map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, want %q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected entry %q", p, got[p])
		}
	}
}

// decode parses a command's JSON stdout.
func decode[T any](t *testing.T, r cliResult) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout is not the expected JSON (%v):\n%s", err, r.stdout)
	}
	return v
}

// storeKeys lists the keys under prefix.
func storeKeys(t *testing.T, st transfer.ObjectStore, prefix string) []string {
	t.Helper()
	var keys []string
	err := st.List(context.Background(), prefix, func(oi transfer.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// flipByte damages one byte in the middle of an object, through the store.
func flipByte(t *testing.T, st transfer.ObjectStore, key string) {
	t.Helper()
	ctx := context.Background()
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := st.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func keyFileWith(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
