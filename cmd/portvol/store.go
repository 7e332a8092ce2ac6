package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/transfer/localdir"
	"github.com/portvol/portvol/transfer/meter"
	"github.com/portvol/portvol/transfer/retry"
	"github.com/portvol/portvol/transfer/s3"
)

// storeURLHelp is the store URL syntax, for flag help and error messages.
const storeURLHelp = `file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&addressing=auto|path|virtual&ca_file=PATH&profile=NAME&credentials_file=PATH&create_bucket=true|false]`

// s3Params are the query parameters an s3:// URL accepts.
var s3Params = []string{"addressing", "ca_file", "create_bucket", "credentials_file", "endpoint", "profile", "region"}

// storeConfig is a parsed store URL: which store, and its options without
// credentials.
type storeConfig struct {
	dir  string     // file://
	s3   s3.Options // s3://
	isS3 bool
}

var bucketName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$`)

// parseStoreURL parses a --store URL. Its errors are usage errors that
// say what is wrong and show the valid form.
func parseStoreURL(raw string) (storeConfig, error) {
	shown := redactURL(raw)
	bad := func(format string, args ...any) (storeConfig, error) {
		return storeConfig{}, usageError{fmt.Errorf("store URL %q: "+format, append([]any{shown}, args...)...)}
	}
	if raw == "" {
		return bad("empty; want %s", storeURLHelp)
	}
	if filepath.IsAbs(raw) {
		return bad("a path needs the file scheme: use file://%s", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("%s; want %s", err.Error(), storeURLHelp)
	}
	switch u.Scheme {
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
			return bad("a file store needs an absolute path with three slashes, e.g. file:///var/lib/portvol/store")
		}
		if u.RawQuery != "" || u.User != nil {
			return bad("a file store takes no parameters")
		}
		return storeConfig{dir: filepath.Clean(u.Path)}, nil
	case "s3":
		return parseS3URL(u, bad)
	case "":
		return bad("no scheme; want %s", storeURLHelp)
	}
	return bad("unknown scheme %q; want file or s3: %s", u.Scheme, storeURLHelp)
}

func parseS3URL(u *url.URL, bad func(string, ...any) (storeConfig, error)) (storeConfig, error) {
	if u.User != nil {
		return bad("credentials do not belong in the store URL (it is shown by docker inspect): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a credentials file")
	}
	if u.Host == "" {
		return bad("no bucket: want s3://BUCKET[/PREFIX]")
	}
	if !bucketName.MatchString(u.Host) {
		return bad("bucket %q: want 3-63 letters, digits, dots, hyphens or underscores", u.Host)
	}
	opts := s3.Options{Bucket: u.Host}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if err := transfer.CheckKey(p); err != nil {
			return bad("prefix %q: want slash-separated segments of [A-Za-z0-9._-], none empty, \".\" or \"..\"", p)
		}
		opts.Prefix = p + "/"
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %s", err.Error())
	}
	for name, vals := range q {
		if !slices.Contains(s3Params, name) {
			return bad("unknown parameter %q; valid parameters: %s", name, strings.Join(s3Params, ", "))
		}
		if len(vals) != 1 || vals[0] == "" {
			return bad("parameter %q needs exactly one value", name)
		}
	}
	if ep := q.Get("endpoint"); ep != "" {
		eu, err := url.Parse(ep)
		if err == nil && eu.User != nil {
			return bad("parameter endpoint=%q: credentials do not belong in the store URL (it is shown by docker plugin inspect and in logs): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a credentials file", redactURL(ep))
		}
		if err != nil || (eu.Scheme != "http" && eu.Scheme != "https") || eu.Host == "" || strings.Trim(eu.Path, "/") != "" || eu.RawQuery != "" {
			return bad("parameter endpoint=%q: want http://HOST[:PORT] or https://HOST[:PORT] (the scheme selects TLS)", redactURL(ep))
		}
		opts.Endpoint = eu.Scheme + "://" + eu.Host
	}
	opts.Region = q.Get("region")
	switch a := q.Get("addressing"); a {
	case "", "auto":
	case "path":
		opts.Addressing = s3.AddressingPath
	case "virtual":
		opts.Addressing = s3.AddressingVirtual
	default:
		return bad("parameter addressing=%q: want auto, path or virtual", a)
	}
	switch c := q.Get("create_bucket"); c {
	case "", "true":
	case "false":
		opts.NoCreateBucket = true
	default:
		return bad("parameter create_bucket=%q: want true or false", c)
	}
	for _, name := range []string{"ca_file", "credentials_file"} {
		if p := q.Get(name); p != "" && !filepath.IsAbs(p) {
			return bad("parameter %s=%q: want an absolute path", name, p)
		}
	}
	opts.CAFile = q.Get("ca_file")
	opts.CredentialsFile = q.Get("credentials_file")
	opts.Profile = q.Get("profile")
	return storeConfig{s3: opts, isS3: true}, nil
}

// openStore opens the store at rawURL, wrapped in retries. getenv supplies
// the credentials (nil: the process environment): AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; without them the shared
// credentials file (credentials_file= or AWS_SHARED_CREDENTIALS_FILE,
// profile= or AWS_PROFILE), then the IAM role of the host. Bad URLs give a
// usageError.
//
// Only create makes anything: the directory of a file store, or the
// bucket (unless create_bucket=false). Without it a missing directory or
// bucket fails with an error matching transfer.ErrStoreMissing: a typo in
// --store must not start a new, empty store.
func openStore(ctx context.Context, rawURL string, getenv func(string) string, create bool) (transfer.ObjectStore, error) {
	return openMeteredStore(ctx, rawURL, getenv, create, meter.Reports{})
}

// openMeteredStore is openStore with the meter decorator under the
// retries, so that reports see every attempt.
func openMeteredStore(ctx context.Context, rawURL string, getenv func(string) string, create bool, reports meter.Reports) (transfer.ObjectStore, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg, err := parseStoreURL(rawURL)
	if err != nil {
		return nil, err
	}
	shown := redactURL(rawURL)
	var st transfer.ObjectStore
	if !cfg.isS3 {
		if create {
			st, err = localdir.New(cfg.dir)
		} else {
			st, err = localdir.Open(cfg.dir)
		}
		if err != nil {
			return nil, fmt.Errorf("opening store %s: %w", shown, err)
		}
		return retry.New(meter.New(st, reports), retry.Options{}), nil
	}
	opts := cfg.s3
	if !create {
		opts.NoCreateBucket = true
	}
	opts.AccessKey = getenv("AWS_ACCESS_KEY_ID")
	opts.SecretKey = transfer.Secret(getenv("AWS_SECRET_ACCESS_KEY"))
	opts.SessionToken = transfer.Secret(getenv("AWS_SESSION_TOKEN"))
	if (opts.AccessKey == "") != (opts.SecretKey == "") {
		return nil, usageError{fmt.Errorf("store %s: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither", shown)}
	}
	if opts.CredentialsFile == "" {
		opts.CredentialsFile = getenv("AWS_SHARED_CREDENTIALS_FILE")
	}
	if opts.Profile == "" {
		opts.Profile = getenv("AWS_PROFILE")
	}
	s, err := s3.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", shown, err)
	}
	return retry.New(meter.New(s, reports), retry.Options{}), nil
}

// userinfo matches the user[:password]@ part of every URL inside a
// string: the store URL's own and any in its parameters (endpoint=).
var userinfo = regexp.MustCompile(`(?i)(://|%3A%2F%2F)[^/?#\s&]*(@|%40)`)

// redactURL hides every user:password part of a URL, also one inside a
// parameter such as endpoint=http://user:pass@host (plain or
// percent-encoded), so that no message or log repeats a credential
// someone put in --store.
func redactURL(raw string) string {
	return userinfo.ReplaceAllString(raw, "${1}**redacted**@")
}
