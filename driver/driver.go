package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/localcopy"
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
	// ErrUnavailable: the store cannot be reached (or opened) now.
	ErrUnavailable = errors.New("store unreachable")
	// ErrBusy: the volume is held by another host, or being restored,
	// uploaded or changed here; the message says what to wait for.
	ErrBusy = errors.New("volume busy")
)

// Defaults of Config fields.
const (
	DefaultTrashRetention = 168 * time.Hour
	// restoreIdle is how long a host keeps the lease it took for a restore
	// that no Mount came back for.
	restoreIdle = 5 * time.Minute
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
	// Connect opens the shared store. Required. Connect (the method) calls
	// it in the background until it succeeds; until then Create, Mount and
	// Remove fail with ErrUnavailable, and Get and List answer from this
	// host's records.
	Connect func(ctx context.Context) (*Backend, error)
	// MountWait is how long a Mount waits for another host to release the
	// volume; 0 means lease.DefaultMountWait. Keep it well below the 25 s a
	// Mount may take in all.
	MountWait time.Duration
	// TrashRetention is how long removed volumes stay in the store's trash;
	// 0 means DefaultTrashRetention.
	TrashRetention time.Duration
	// Observer is told about mounts, leases, snapshots and restores (for
	// metrics); nil means nobody.
	Observer Observer
	// Copies is where new local copies are made (btrfs subvolumes or
	// directories); nil means directories in StateDir (localcopy.Dir).
	// Copies made as directories before stay in StateDir until their next
	// restore or Convert.
	Copies localcopy.Copies
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
	obs       Observer
	copies    localcopy.Copies // where new copies go
	dirs      *localcopy.Dir   // directory copies (made before, or by choice)

	connect        func(ctx context.Context) (*Backend, error)
	backend        atomic.Pointer[Backend]
	connErr        atomic.Pointer[string]
	firstTry       chan struct{} // closed when the first attempt to connect ended
	mountWait      time.Duration
	trashRetention time.Duration
	callTimeout    time.Duration // handler deadline of slow calls
	bodyTimeout    time.Duration // handler deadline for a request body
	bootID         func() (string, error)
	answerHook     func(stage, name, id string) // tests: a process death while answering
	restoreIdle    time.Duration
	retryBase      time.Duration // first wait of background retries
	view           storeView
	standby        standbyTimes // how often standby volumes are looked for and followed
	lost           lostHeads    // takeover notes: the lost hosts' last heads
	orphans        orphanSet    // volumes found without an orphaned lease of ours

	volsMu sync.Mutex
	vols   map[string]*vstate

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
	if cfg.Connect == nil {
		return nil, errors.New("driver: no store (Config.Connect)")
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
	for _, dir := range []string{filepath.Join(stateDir, "volumes"), filepath.Join(stateDir, "trash"), filepath.Join(stateDir, "kept")} {
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
	if cfg.MountWait <= 0 {
		cfg.MountWait = lease.DefaultMountWait
	}
	if cfg.TrashRetention <= 0 {
		cfg.TrashRetention = DefaultTrashRetention
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	dirs := localcopy.NewDir(stateDir)
	copies := cfg.Copies
	if copies == nil {
		copies = dirs
	}
	bg, stop := context.WithCancel(context.Background())
	return &Driver{
		copies:         copies,
		dirs:           dirs,
		obs:            cfg.Observer,
		stateDir:       stateDir,
		mountRoot:      mountRoot,
		hostID:         cfg.HostID,
		db:             cfg.DB,
		log:            log,
		mnt:            sysMounter{},
		connect:        cfg.Connect,
		mountWait:      cfg.MountWait,
		trashRetention: cfg.TrashRetention,
		callTimeout:    slowCallTimeout,
		bodyTimeout:    bodyTimeout,
		bootID:         readBootID,
		restoreIdle:    restoreIdle,
		retryBase:      time.Second,
		view:           storeView{ttl: viewTTL},
		standby:        standbyTimes{scan: standbyScanEvery, follow: DefaultFollowInterval},
		firstTry:       make(chan struct{}),
		vols:           map[string]*vstate{},
		bg:             bg,
		stopBg:         stop,
	}, nil
}

// Close stops background work and waits for it. It leaves mounts and
// leases in place: containers keep using them, and the next start
// reconciles and resumes (or, if another host took over, fences).
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

// tryLock takes name's lock if nobody holds or waits for it.
func (l *volLocks) tryLock(name string) (unlock func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*volLock{}
	}
	if l.m[name] != nil {
		return nil, false
	}
	vl := &volLock{ch: make(chan struct{}, 1), refs: 1}
	vl.ch <- struct{}{}
	l.m[name] = vl
	return func() {
		<-vl.ch
		l.mu.Lock()
		vl.refs--
		if vl.refs == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}, true
}

// kindError is an error with its own message that still matches one of the
// sentinels with errors.Is, so messages read as one sentence.
type kindError struct {
	kind  error
	msg   string
	cause error // optional: the underlying error, still matched by errors.Is
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// statCache is the snapshot engine's stat cache of name's data directory.
// It lives in the state directory's volumes/<name> wherever the copy is
// (a btrfs pool's copies are elsewhere), which is made here if missing.
func (d *Driver) statCache(name string) string {
	_ = os.MkdirAll(d.volumeDir(name), 0o700) // a failure shows when the cache is written
	return filepath.Join(d.volumeDir(name), "statcache")
}
