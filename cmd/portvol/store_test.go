package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvol/portvol/internal/s3test"
	"github.com/portvol/portvol/transfer/s3"
)

func TestParseStoreURL(t *testing.T) {
	cases := []struct {
		raw     string
		wantDir string
		wantS3  *s3.Options
		wantErr string // substring of the usage error
	}{
		{raw: "file:///var/lib/portvol/store", wantDir: "/var/lib/portvol/store"},
		{raw: "file:///srv/store/", wantDir: "/srv/store"},
		{raw: "file://localhost/srv/store", wantDir: "/srv/store"},
		{raw: "s3://bucket", wantS3: &s3.Options{Bucket: "bucket"}},
		{raw: "s3://my-bucket/team/a?endpoint=http://127.0.0.1:7070&region=us-east-1",
			wantS3: &s3.Options{Bucket: "my-bucket", Prefix: "team/a/", Endpoint: "http://127.0.0.1:7070", Region: "us-east-1"}},
		{raw: "s3://b.example/p/?endpoint=https://s3.example.com/&addressing=virtual&ca_file=/etc/ca.pem&profile=prod&credentials_file=/root/.aws/c&create_bucket=false",
			wantS3: &s3.Options{Bucket: "b.example", Prefix: "p/", Endpoint: "https://s3.example.com", Addressing: s3.AddressingVirtual,
				CAFile: "/etc/ca.pem", Profile: "prod", CredentialsFile: "/root/.aws/c", NoCreateBucket: true}},
		{raw: "s3://bucket?addressing=path", wantS3: &s3.Options{Bucket: "bucket", Addressing: s3.AddressingPath}},

		{raw: "", wantErr: "empty"},
		{raw: "/var/lib/portvol/store", wantErr: "use file:///var/lib/portvol/store"},
		{raw: "file://var/lib/store", wantErr: "absolute path with three slashes"},
		{raw: "file:relative/store", wantErr: "absolute path with three slashes"},
		{raw: "file:///srv/store?x=1", wantErr: "takes no parameters"},
		{raw: "gs://bucket", wantErr: `unknown scheme "gs"`},
		{raw: "relative/path", wantErr: "no scheme"},
		{raw: "s3:///prefix", wantErr: "no bucket"},
		{raw: "s3://b", wantErr: "bucket \"b\""},
		{raw: "s3://bad bucket", wantErr: "invalid"},
		{raw: "s3://bucket/a/../b", wantErr: "prefix"},
		{raw: "s3://bucket/a//b", wantErr: "prefix"},
		{raw: "s3://AKIA:secret@bucket", wantErr: "credentials do not belong"},
		{raw: "s3://bucket?endpoint=http://AKIA:secret@127.0.0.1:7070", wantErr: "credentials do not belong"},
		{raw: "s3://bucket?endpoint=http%3A%2F%2FAKIA%3Asecret%40127.0.0.1%3A7070", wantErr: "credentials do not belong"},
		{raw: "s3://bucket?endpoint=ftp://AKIA:secret@h/x", wantErr: "credentials do not belong"},
		{raw: "s3://bucket?endpoit=http://x", wantErr: `unknown parameter "endpoit"; valid parameters: addressing, ca_file, create_bucket, credentials_file, endpoint, profile, region`},
		{raw: "s3://bucket?endpoint=127.0.0.1:7070", wantErr: "want http://HOST[:PORT]"},
		{raw: "s3://bucket?endpoint=ftp://h", wantErr: "want http://HOST[:PORT]"},
		{raw: "s3://bucket?endpoint=http://h/path", wantErr: "want http://HOST[:PORT]"},
		{raw: "s3://bucket?region=a&region=b", wantErr: `"region" needs exactly one value`},
		{raw: "s3://bucket?region=", wantErr: `"region" needs exactly one value`},
		{raw: "s3://bucket?addressing=dns", wantErr: "want auto, path or virtual"},
		{raw: "s3://bucket?create_bucket=no", wantErr: "want true or false"},
		{raw: "s3://bucket?ca_file=ca.pem", wantErr: "want an absolute path"},
	}
	for _, c := range cases {
		t.Run(c.raw, func(t *testing.T) {
			cfg, err := parseStoreURL(c.raw)
			if c.wantErr != "" {
				var ue usageError
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want a usage error containing %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error repeats a credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case c.wantS3 != nil:
				if !cfg.isS3 || cfg.s3 != *c.wantS3 {
					t.Fatalf("got %+v, want s3 %+v", cfg, *c.wantS3)
				}
			case cfg.isS3 || cfg.dir != c.wantDir:
				t.Fatalf("got %+v, want dir %q", cfg, c.wantDir)
			}
		})
	}
}

// No credential in a store URL survives redaction, wherever it sits.
func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"s3://AKIA:secret@bucket/p":                                       "s3://**redacted**@bucket/p",
		"s3://bucket/p?endpoint=http://AKIA:secret@h:9000&region=x":       "s3://bucket/p?endpoint=http://**redacted**@h:9000&region=x",
		"s3://bucket?endpoint=http%3A%2F%2FAKIA%3Asecret%40h%3A9000":      "s3://bucket?endpoint=http%3A%2F%2F**redacted**@h%3A9000",
		"s3://u:secret@bucket?endpoint=https://u:p%40ss@h&profile=secret": "s3://**redacted**@bucket?endpoint=https://**redacted**@h&profile=secret",
		"file:///srv/store":                    "file:///srv/store",
		"s3://bucket/p?endpoint=http://h:9000": "s3://bucket/p?endpoint=http://h:9000",
	} {
		if got := redactURL(raw); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func FuzzParseStoreURL(f *testing.F) {
	f.Add("s3://bucket/p?endpoint=http://127.0.0.1:1&region=x")
	f.Add("file:///srv/store")
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := parseStoreURL(raw)
		if err != nil {
			return
		}
		if cfg.isS3 && cfg.s3.Prefix != "" && !strings.HasSuffix(cfg.s3.Prefix, "/") {
			t.Fatalf("%q: prefix %q without a trailing slash", raw, cfg.s3.Prefix)
		}
		if !cfg.isS3 && !strings.HasPrefix(cfg.dir, "/") {
			t.Fatalf("%q: relative directory %q", raw, cfg.dir)
		}
	})
}

func roundTrip(t *testing.T, rawURL string, env map[string]string) {
	t.Helper()
	ctx := context.Background()
	st, err := openStore(ctx, rawURL, func(k string) string { return env[k] }, true)
	if err != nil {
		t.Fatalf("openStore(%q): %v", rawURL, err)
	}
	if err := st.Put(ctx, "volumes/v/volume.json", bytes.NewReader([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, "volumes/v/volume.json", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "{}" {
		t.Fatalf("read back %q", b)
	}
}

func TestOpenStoreFile(t *testing.T) {
	roundTrip(t, "file://"+t.TempDir()+"/store", nil)
}

func TestOpenStoreS3(t *testing.T) {
	srv := s3test.Start(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}
	roundTrip(t, srv.URL(srv.Prefix(t)), env)

	_, err := openStore(context.Background(), srv.URL("x/"), func(k string) string {
		if k == "AWS_ACCESS_KEY_ID" {
			return srv.AccessKey
		}
		return ""
	}, false)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("access key without secret: %v, want a usage error naming AWS_SECRET_ACCESS_KEY", err)
	}
	env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
	_, err = openStore(context.Background(), srv.URL("x/"), func(k string) string { return env[k] }, false)
	if err == nil || strings.Contains(err.Error(), "not-the-secret") || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("wrong secret: %v, want an error pointing at AWS_SECRET_ACCESS_KEY without showing it", err)
	}
}

// Credentials from a shared credentials file, with a profile, when the
// environment has none.
func TestOpenStoreS3CredentialsFile(t *testing.T) {
	srv := s3test.Start(t)
	file := filepath.Join(t.TempDir(), "credentials")
	content := "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[portvol]\naws_access_key_id = " +
		srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, srv.URL(srv.Prefix(t))+"&profile=portvol&credentials_file="+url.QueryEscape(file), nil)
	roundTrip(t, srv.URL(srv.Prefix(t)), map[string]string{"AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "portvol"})
}

func TestOpenStoreS3TLS(t *testing.T) {
	srv := s3test.StartTLS(t)
	roundTrip(t, srv.URL(srv.Prefix(t)), map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey})
}
