package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/internal/metrics"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
	"github.com/portvol/portvol/transfer"
)

const (
	defaultSocket   = "/run/docker/plugins/portvol.sock"
	defaultStateDir = "/var/lib/portvol"
	// shutdownGrace stays below dockerd's 10 s between SIGTERM and SIGKILL.
	shutdownGrace = 8 * time.Second
)

type serveOptions struct {
	socket    string
	stateDir  string
	store     string
	hostID    string
	mountRoot string
	logLevel  string
	logFormat string

	leaseTTL       time.Duration
	mountWait      time.Duration
	trashRetention time.Duration
	keyFile        string
	metricsAddr    string

	restorePrivileged bool
	joinStore         string

	volumeFS      string
	poolSize      string
	poolSizeBytes int64
}

func newServeCmd(stdout io.Writer) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the Docker volume plugin protocol on a unix socket",
		Long: `Serve the Docker volume plugin protocol on a unix socket until SIGTERM or SIGINT.

In the managed plugin this is the entrypoint. On a host without the managed
plugin, run it as a service (contrib/systemd/portvol.service): the socket name
is the driver name, so /run/docker/plugins/portvol.sock gives -d portvol.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), o, stdout)
		},
	}
	f := c.Flags()
	f.StringVar(&o.socket, "socket", defaultSocket, "unix socket to listen on; its base name without .sock is the driver name")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir, "directory for the state database and the volumes' data")
	f.StringVar(&o.store, "store", "", "object store URL: file:///abs/path or s3://bucket[/prefix] (default file://<state-dir>/store)")
	f.StringVar(&o.hostID, "host-id", "", "this host's id in the store (default: generated once and kept in the state directory)")
	f.StringVar(&o.mountRoot, "mount-root", "", "directory under which volumes are mounted for containers (default <state-dir>/mnt; the managed plugin uses its propagated mount)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: error, warn, info, debug or trace")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.DurationVar(&o.leaseTTL, "lease-ttl", lease.DefaultTTL, "how long a host's ownership of a volume lasts without renewal; another host may take over a volume whose lease it saw unchanged this long")
	f.DurationVar(&o.mountWait, "mount-wait", lease.DefaultMountWait, "how long a Mount waits for another host to release the volume (below 28s: dockerd allows a call 30s)")
	f.DurationVar(&o.trashRetention, "trash-retention", driver.DefaultTrashRetention, "how long removed volumes stay in the store's trash (portvol undelete)")
	f.StringVar(&o.keyFile, "encryption-key-file", "", "file holding the snapshot encryption key (32 bytes: raw, hex or base64); a new store is encrypted iff it is given")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics (/metrics) and health (/healthz) over HTTP on this HOST:PORT, e.g. 127.0.0.1:9326 (default: off)")
	f.BoolVar(&o.restorePrivileged, "restore-privileged", false, "restore device nodes, setuid/setgid files and file capabilities from an unencrypted store (only if you trust everyone who can write to it; encrypted stores restore them always)")
	f.StringVar(&o.joinStore, "join-store", "", "store id of a new store this host may move to, replacing the one it joined (the error naming a different store prints it)")
	f.StringVar(&o.volumeFS, "volume-fs", volumeFSAuto, "where volume data lives: auto (btrfs when the kernel has it), btrfs (subvolumes in the state directory if it is btrfs, else in a pool image under it) or directory")
	f.StringVar(&o.poolSize, "pool-size", "", "size of the btrfs pool image (sparse) when the state directory is not on btrfs, such as 200G; raising it grows the pool at the next start (default: the free space of the state directory's disk when the pool is made)")
	return c
}

// serve runs the plugin until ctx ends.
func serve(ctx context.Context, o serveOptions, stdout io.Writer) error {
	log, err := newLogger(stdout, o.logLevel, o.logFormat)
	if err != nil {
		return usageError{err}
	}
	// First, so that every start, also a failed one, says which build ran.
	bv := currentVersion()
	log.WithField("version", bv.Version).WithField("revision", bv.revisionText()).
		WithField("go", bv.Go).Info("portvol starting")
	if err := o.complete(); err != nil {
		return usageError{err}
	}
	key, err := readKeyFile(o.keyFile)
	if err != nil {
		return err
	}

	// Listen first: a managed plugin must answer dockerd's dial within a
	// few seconds of start, and everything else can wait for it.
	l, err := listenUnix(o.socket)
	if err != nil {
		return err
	}
	defer func() {
		_ = l.Close()
		_ = os.Remove(o.socket)
	}()

	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	first, err := firstStart(o.stateDir)
	if err != nil {
		return err
	}
	db, err := metadata.Open(filepath.Join(o.stateDir, "portvol.db"), metadata.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			log.WithError(err).Error("closing the state database")
		}
	}()
	if first {
		// The one moment a plugin may create its store: nothing here
		// depends on any store yet. Kept until a store is joined, so a
		// restart before the first connect keeps it.
		if err := db.AllowStoreCreation(ctx); err != nil {
			return err
		}
	}
	hostID, err := resolveHostID(ctx, db, o.hostID, log)
	if err != nil {
		return err
	}
	log = log.WithField("host", hostID)
	copies, err := openVolumeFS(ctx, o, log)
	if err != nil {
		return err
	}
	m := metrics.New(buildInfo(), nil)
	var opened atomic.Pointer[transfer.ObjectStore]

	d, err := driver.New(driver.Config{
		StateDir:       o.stateDir,
		MountRoot:      o.mountRoot,
		HostID:         hostID,
		DB:             db,
		Logger:         log,
		Connect:        backendOpener(o, hostID, key, db, log, m, &opened),
		MountWait:      o.mountWait,
		TrashRetention: o.trashRetention,
		Observer:       m,
		Copies:         copies,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Reconcile(ctx); err != nil {
		return err
	}
	// The store may be slow or down: serve first, connect in the background.
	d.Connect()

	srv := &http.Server{
		Handler:           driver.NewHandler(d, log),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies have their own deadline in the handler (driver.NewHandler);
		// a kept-alive connection nobody uses is closed after a while.
		IdleTimeout: 2 * time.Minute,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	mctx, stopMetrics := context.WithCancel(ctx)
	defer stopMetrics()
	serveMetrics(mctx, o.metricsAddr, m, func(ctx context.Context) error {
		_, err := db.HostID(ctx) // the state database answers
		return err
	}, log)
	go probeStore(mctx, &opened, m)
	log.WithField("socket", o.socket).WithField("state_dir", o.stateDir).
		WithField("mount_root", o.mountRoot).WithField("store", redactURL(o.store)).
		Info("portvol serving")

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve %s: %w", o.socket, err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.WithError(err).Warn("requests still running at shutdown")
	}
	return nil
}

// firstStart reports whether stateDir holds no portvol state yet (no state
// database, no volume data): files a user put there first, such as a
// credentials or key file, do not count.
func firstStart(stateDir string) (bool, error) {
	for _, name := range []string{"portvol.db", "volumes"} {
		_, err := os.Lstat(filepath.Join(stateDir, name))
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("state directory: %w", err)
		}
	}
	return true, nil
}

// complete fills in defaults that depend on other flags and checks values.
func (o *serveOptions) complete() error {
	if !filepath.IsAbs(o.stateDir) {
		return fmt.Errorf("--state-dir %q must be an absolute path", o.stateDir)
	}
	o.stateDir = filepath.Clean(o.stateDir)
	if o.socket == "" || !filepath.IsAbs(o.socket) {
		return fmt.Errorf("--socket %q must be an absolute path such as %s", o.socket, defaultSocket)
	}
	if o.mountRoot == "" {
		o.mountRoot = filepath.Join(o.stateDir, "mnt")
	}
	if !filepath.IsAbs(o.mountRoot) {
		return fmt.Errorf("--mount-root %q must be an absolute path", o.mountRoot)
	}
	if o.store == "" {
		o.store = "file://" + filepath.Join(o.stateDir, "store")
	}
	if _, err := parseStoreURL(o.store); err != nil {
		return err
	}
	if err := o.checkOwnershipFlags(); err != nil {
		return err
	}
	if o.joinStore != "" && !storeIDRE.MatchString(o.joinStore) {
		return fmt.Errorf("--join-store %q: a store id is 32 hex digits, as the error naming the store prints it", o.joinStore)
	}
	if err := o.checkVolumeFSFlags(); err != nil {
		return err
	}
	if o.hostID != "" && !hostIDRE.MatchString(o.hostID) {
		return fmt.Errorf("--host-id %q: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", o.hostID)
	}
	return nil
}

func newLogger(out io.Writer, level, format string) (logrus.FieldLogger, error) {
	l := logrus.New()
	l.SetOutput(out)
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: use error, warn, info, debug or trace", level)
	}
	l.SetLevel(lv)
	switch format {
	case "text", "":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", format)
	}
	return l, nil
}

// listenUnix listens on path, replacing a stale socket file but refusing to
// steal one that another process still serves.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket path %s exists and is not a socket: remove it or choose another --socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("another process is serving %s: stop it or choose another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	return l, nil
}

var (
	hostIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	storeIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// resolveHostID returns the host id to use: the flag's, else the stored
// one, else a new <hostname>-<8 hex> that is stored for next time. An
// explicit id is stored too, so that dropping the flag later keeps it.
func resolveHostID(ctx context.Context, db *metadata.DB, flag string, log logrus.FieldLogger) (string, error) {
	stored, err := db.HostID(ctx)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return "", err
	}
	switch {
	case flag != "" && flag == stored:
		return flag, nil
	case flag != "":
		if stored != "" {
			log.WithField("old", stored).WithField("new", flag).Warn("host id changed by --host-id")
		}
		return flag, db.SetHostID(ctx, flag)
	case stored != "":
		return stored, nil
	}
	id, err := newHostID()
	if err != nil {
		return "", err
	}
	log.WithField("host_id", id).Info("generated a host id")
	return id, db.SetHostID(ctx, id)
}

func newHostID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate host id: %w", err)
	}
	name, _ := os.Hostname()
	name = strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, name)
	name = strings.TrimLeft(name, "-_.")
	if len(name) > 55 {
		name = name[:55]
	}
	if name == "" {
		name = "host"
	}
	return name + "-" + hex.EncodeToString(b), nil
}
