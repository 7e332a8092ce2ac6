package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/metadata"
)

// Sentinel errors; returned errors wrap them with the volume name and a
// sentence that says what to do.
var (
	// ErrNotFound: no volume of that name on this host.
	ErrNotFound = errors.New("no such volume")
	// ErrInUse: the volume is mounted and cannot be removed.
	ErrInUse = errors.New("volume is in use")
	// ErrInvalid: a name, mount ID or option is malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrConflict: Create of an existing volume with different options.
	ErrConflict = errors.New("volume exists with different options")
)

// Scope is what Capabilities reports: a volume name means the same volume
// on every host.
const Scope = "global"

// Config wires a Driver. StateDir, MountRoot and DB are required.
type Config struct {
	// StateDir holds volumes/ and trash/ (see the package doc).
	StateDir string
	// MountRoot is where Mountpoints are created: the propagated mount of
	// the managed plugin, or a host directory in standalone mode.
	MountRoot string
	// HostID names this host in volume records.
	HostID string
	// DB is the open state database; the caller closes it after Close.
	DB *metadata.DB
	// Logger receives the driver's log lines; nil discards them.
	Logger logrus.FieldLogger
}

// Driver implements the volume plugin operations. Its methods are safe for
// concurrent use.
type Driver struct {
	stateDir  string
	mountRoot string
	hostID    string
	db        *metadata.DB
	log       logrus.FieldLogger
	mnt       mounter
	locks     volLocks

	// Background work (size measurement, trash removal) runs under bg and
	// is cancelled by Close.
	bg     context.Context
	stopBg context.CancelFunc
	wg     sync.WaitGroup
}

// New checks cfg and creates the directories the driver needs. It does not
// look at existing volumes; call Reconcile once before serving.
func New(cfg Config) (*Driver, error) {
	if cfg.DB == nil {
		return nil, errors.New("driver: no state database")
	}
	for _, p := range []struct{ what, path string }{{"state directory", cfg.StateDir}, {"mount root", cfg.MountRoot}} {
		if !filepath.IsAbs(p.path) {
			return nil, fmt.Errorf("%s %q must be an absolute path", p.what, p.path)
		}
	}
	stateDir, err := mkdirResolved(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	mountRoot, err := mkdirResolved(cfg.MountRoot)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{filepath.Join(stateDir, "volumes"), filepath.Join(stateDir, "trash")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	log := cfg.Logger
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	bg, stop := context.WithCancel(context.Background())
	return &Driver{
		stateDir:  stateDir,
		mountRoot: mountRoot,
		hostID:    cfg.HostID,
		db:        cfg.DB,
		log:       log,
		mnt:       sysMounter{},
		bg:        bg,
		stopBg:    stop,
	}, nil
}

// Close stops background work and waits for it. It leaves mounts in place:
// containers keep using them, and the next start reconciles.
func (d *Driver) Close() {
	d.stopBg()
	d.wg.Wait()
}

// mkdirResolved creates dir and returns it with symlinks resolved, so that
// paths compare equal to what /proc/self/mountinfo shows.
func mkdirResolved(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	return r, nil
}

// volumeDir is <state-dir>/volumes/<name>; name must be valid.
func (d *Driver) volumeDir(name string) string {
	return filepath.Join(d.stateDir, "volumes", name)
}

// dataDir is where the volume's data lives.
func (d *Driver) dataDir(name string) string {
	return filepath.Join(d.volumeDir(name), "data")
}

// mountpoint is what Mount returns for name.
func (d *Driver) mountpoint(name string) string {
	return filepath.Join(d.mountRoot, name)
}

// goBackground runs fn in a tracked goroutine with the background context.
func (d *Driver) goBackground(fn func(ctx context.Context)) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn(d.bg)
	}()
}

// volLocks hands out one lock per volume name. The map only holds names
// with a holder or waiter, so it does not grow with the number of volumes.
type volLocks struct {
	mu sync.Mutex
	m  map[string]*volLock
}

type volLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock takes name's lock, or gives up when ctx is done.
func (l *volLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*volLock{}
	}
	vl := l.m[name]
	if vl == nil {
		vl = &volLock{ch: make(chan struct{}, 1)}
		l.m[name] = vl
	}
	vl.refs++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		vl.refs--
		if vl.refs == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
	select {
	case vl.ch <- struct{}{}:
		return func() { <-vl.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("volume %q: waiting for another operation on it: %w", name, ctx.Err())
	}
}

// kindError is an error with its own message that still matches one of the
// sentinels with errors.Is, so messages read as one sentence.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
