package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"time"

	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/transfer"
)

// Defaults.
const (
	DefaultTTL          = 30 * time.Second       // Options.TTL (--lease-ttl)
	DefaultPollInterval = 500 * time.Millisecond // Options.PollInterval
	// DefaultMountWait is how long a Mount waits for another host to
	// release (--mount-wait): below dockerd's 30s limit on plugin calls.
	DefaultMountWait = 20 * time.Second
)

// Options configure a Manager. Zero values mean the defaults.
type Options struct {
	// Host is this host's id, written as the owner of the leases it takes.
	// Required; every host sharing a store needs its own.
	Host string
	// TTL is how long a lease stays valid without renewal (default 30s).
	// Hosts should agree; where they differ, an observer waits for the
	// longer of its own TTL and the one the holder wrote into the record.
	TTL time.Duration
	// PollInterval is how often waiting calls re-read a record (default
	// 500ms, jittered).
	PollInterval time.Duration
	// Clock is the monotonic clock expiry is judged by (default SystemClock).
	Clock Clock
	// Prefix is where the records live: <Prefix><name>/head.json. The
	// default, "volumes/", holds the volumes' leases; other prefixes give
	// the same protocol to other single-holder jobs (prune's maintenance
	// lease lives under "maintenance/").
	Prefix string
}

// Manager takes and inspects leases on the volumes of one store, for one
// host. It remembers when it first saw each version of each record, so
// that later calls can judge expiry; keep one Manager per process. It is
// safe for concurrent use.
type Manager struct {
	store  transfer.ObjectStore
	host   string
	ttl    time.Duration
	poll   time.Duration
	clock  Clock
	prefix string

	mu      sync.Mutex
	seen    map[string]sighting  // volume → the record version seen and since when
	pending map[string][]pending // volume → acquisitions whose outcome is unknown
}

type sighting struct {
	etag  string
	first time.Duration
}

type pending struct {
	data []byte
	sent time.Duration
}

// New returns a Manager for store.
func New(store transfer.ObjectStore, o Options) (*Manager, error) {
	if err := CheckHost(o.Host); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < 3*time.Millisecond || o.TTL > maxTTL || o.TTL%time.Millisecond != 0 {
		return nil, fmt.Errorf("lease: TTL %s: use whole milliseconds between 3ms and %s", o.TTL, maxTTL)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.Prefix == "" {
		o.Prefix = "volumes/"
	}
	if !prefixRE.MatchString(o.Prefix) {
		return nil, fmt.Errorf("lease: record prefix %q: use letters, digits, '_', '.' or '-' ending in '/'", o.Prefix)
	}
	return &Manager{
		store: store, host: o.Host, ttl: o.TTL, poll: o.PollInterval, clock: o.Clock, prefix: o.Prefix,
		seen: make(map[string]sighting), pending: make(map[string][]pending),
	}, nil
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*/$`)

// key returns the store key of the record for name.
func (m *Manager) key(name string) string { return m.prefix + name + "/head.json" }

// Host returns this manager's host id.
func (m *Manager) Host() string { return m.host }

// TTL returns the lease duration.
func (m *Manager) TTL() time.Duration { return m.ttl }

// Observation is a head record as this host sees it.
type Observation struct {
	Volume    string
	Exists    bool   // false: the volume has no head record yet
	Record    Record // valid if Exists
	ETag      string
	Unchanged time.Duration // how long this host has seen this exact record
	TTL       time.Duration // the longer of this host's TTL and the record writer's
	data      []byte
}

// Expired reports whether the record is held and this host has seen it
// unchanged for a full TTL. A process that has just started sees every
// record as fresh: it must watch for a TTL before it can judge.
func (o Observation) Expired() bool {
	return o.Exists && o.Record.State == Held && o.Unchanged >= o.TTL
}

// Inspect reads a volume's head record, for status output.
func (m *Manager) Inspect(ctx context.Context, volume string) (Observation, error) {
	if err := volname.Check(volume); err != nil {
		return Observation{}, err
	}
	return m.load(ctx, volume)
}

// load reads and decodes the head record, retrying transient errors, and
// updates the sighting: a record version's age is measured from the first
// read that returned it, which is after it was written.
func (m *Manager) load(ctx context.Context, volume string) (Observation, error) {
	key := m.key(volume)
	var data []byte
	var etag string
	err := m.retry(ctx, func() error {
		var err error
		data, etag, err = m.store.Load(ctx, key, MaxRecordSize)
		return err
	})
	now := m.clock.Now()
	o := Observation{Volume: volume, TTL: m.ttl}
	if errors.Is(err, transfer.ErrNotExist) {
		m.mu.Lock()
		delete(m.seen, volume)
		m.mu.Unlock()
		return o, nil
	}
	if errors.Is(err, transfer.ErrTooLarge) {
		return o, fmt.Errorf("volume %q: %s: %w: %w; inspect or restore that object in the store", volume, key, ErrCorrupt, err)
	}
	if err != nil {
		return o, fmt.Errorf("volume %q: reading %s: %w", volume, key, err)
	}
	rec, err := Decode(data)
	if err == nil && rec.Volume != volume {
		err = fmt.Errorf("%w: it names volume %q", ErrCorrupt, rec.Volume)
	}
	if err != nil {
		return o, fmt.Errorf("volume %q: %s: %w; inspect or restore that object in the store", volume, key, err)
	}
	m.mu.Lock()
	s, ok := m.seen[volume]
	if !ok || s.etag != etag {
		s = sighting{etag: etag, first: now}
		m.seen[volume] = s
	}
	m.mu.Unlock()
	o.Exists, o.Record, o.ETag, o.Unchanged, o.data = true, rec, etag, now-s.first, data
	o.TTL = max(m.ttl, rec.TTL())
	return o, nil
}

const maxAttempts = 4

// retry runs op until it succeeds, fails for good, or maxAttempts transient
// failures have happened, backing off 100ms, 200ms, 400ms (jittered).
func (m *Manager) retry(ctx context.Context, op func() error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !transfer.Retryable(err) || attempt == maxAttempts {
			return err
		}
		if serr := sleep(ctx, m.clock, jitter(backoff)); serr != nil {
			return errors.Join(err, serr)
		}
		backoff *= 2
	}
}

// jitter returns a duration uniformly in [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d)
}

func (m *Manager) addPending(volume string, p pending) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := append(m.pending[volume], p)
	if len(ps) > maxPending {
		ps = ps[len(ps)-maxPending:]
	}
	m.pending[volume] = ps
}

// maxPending bounds the unsettled acquisitions remembered per volume; only
// the newest can still be the current record in practice.
const maxPending = 8

// takePending returns and forgets the unsettled acquisition of ours that
// wrote data, if any.
func (m *Manager) takePending(volume string, data []byte) (pending, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pending[volume] {
		if bytes.Equal(p.data, data) {
			delete(m.pending, volume)
			return p, true
		}
	}
	return pending{}, false
}

func (m *Manager) clearPending(volume string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, volume)
}
