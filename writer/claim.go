package writer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvol/portvol/internal/durable"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/transfer"
)

// ErrBusy: another process on this host holds the claim.
var ErrBusy = errors.New("another process on this host is writing this volume")

// claimVersion is the format of a claim file.
const claimVersion = 1

// maxClaimSize bounds what is read of a claim file.
const maxClaimSize = 4096

// Claim states.
const (
	claimAcquiring = "acquiring" // about to take the lease; the outcome of that write may be unknown
	claimHeld      = "held"      // holds Generation: its lease is this process's (or a dead earlier run's)
	claimReleased  = "released"  // gave the lease back
)

// Claim is a process's exclusive, local claim to write one volume of one
// store under one host id: a file held with flock(2), which the kernel
// lets go of when the process dies, however it dies. What the file says
// survives the process: the generation it held. So a later run that gets
// the lock knows that every earlier run which wrote the file is gone, and
// if the store still shows that generation held by this host id, that
// lease is a dead run's, which the new run may continue at once (Resume)
// instead of waiting out the TTL.
//
// A claim proves nothing about processes that use another claim
// directory, or about other hosts using the same host id: for those the
// store's conditional writes still decide, and an unproven lease of this
// host id is taken only after it has been seen unchanged for a full TTL.
type Claim struct {
	f     *os.File
	path  string
	prior ClaimRecord
	// acquiring is set while Acquire takes the lease: the store from
	// Watch then records each acquisition record before it is sent.
	acquiring atomic.Bool
}

// ClaimRecord is the content of a claim file.
type ClaimRecord struct {
	Version    int       `json:"version"`
	Store      string    `json:"store"`
	Host       string    `json:"host"`
	Volume     string    `json:"volume"`
	State      string    `json:"state"`
	Generation uint64    `json:"generation,omitempty"`
	Nonce      string    `json:"nonce,omitempty"` // "acquiring": the nonce of the head record being sent
	PID        int       `json:"pid"`
	BootID     string    `json:"boot_id,omitempty"`
	Updated    time.Time `json:"updated"`
}

// BusyError reports a claim another live process holds.
type BusyError struct {
	Path   string
	Holder ClaimRecord // what the holder last wrote; zero if unreadable
}

func (e *BusyError) Error() string {
	who := "another process"
	if e.Holder.PID > 0 {
		who = fmt.Sprintf("process %d", e.Holder.PID)
	}
	return fmt.Sprintf("volume %q: %s on this host is writing it as host %q (it holds the lock %s): wait for it to finish, or stop it",
		e.Holder.Volume, who, e.Holder.Host, e.Path)
}

// Is makes a BusyError match ErrBusy.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// ClaimPath returns the claim file of volume of store storeID for host
// under dir.
func ClaimPath(dir, storeID, host, volume string) string {
	return filepath.Join(dir, storeID, host, volume+".lock")
}

// OpenClaim takes the claim, without waiting: a claim another live
// process holds is a *BusyError. storeID, host and volume must be safe as
// path segments (store ids, host ids and volume names are).
func OpenClaim(dir, storeID, host, volume string) (*Claim, error) {
	for _, s := range []string{storeID, host, volume} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
			return nil, fmt.Errorf("claim: %q cannot name a file", s)
		}
	}
	path := ClaimPath(dir, storeID, host, volume)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("claim directory: %w", err)
	}
	// The file is never removed: removing a lock file races with a
	// process that has opened it and is about to lock it.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := readClaim(f)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if holder.Volume == "" {
				holder.Volume, holder.Host = volume, host
			}
			return nil, &BusyError{Path: path, Holder: holder}
		}
		return nil, fmt.Errorf("claim %s: lock: %w", path, err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("claim: %w", err)
	}
	c := &Claim{f: f, path: path}
	prior, err := readClaim(f)
	// An unreadable claim (torn by a power cut, or not ours) proves
	// nothing: it is as if there were none.
	if err == nil && prior.Store == storeID && prior.Host == host && prior.Volume == volume {
		c.prior = prior
	}
	c.prior.Store, c.prior.Host, c.prior.Volume = storeID, host, volume
	return c, nil
}

func readClaim(f *os.File) (ClaimRecord, error) {
	var r ClaimRecord
	data, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, maxClaimSize+1), maxClaimSize+1))
	if err != nil {
		return r, err
	}
	if len(data) == 0 || len(data) > maxClaimSize {
		return r, fmt.Errorf("claim: %d bytes", len(data))
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return ClaimRecord{}, err
	}
	if r.Version != claimVersion {
		return ClaimRecord{}, fmt.Errorf("claim version %d", r.Version)
	}
	return r, nil
}

// Path returns the claim file's path.
func (c *Claim) Path() string { return c.path }

// Prior returns what the last run that held the claim wrote, which is
// gone now: its state is "" if no run left a readable record.
func (c *Claim) Prior() ClaimRecord {
	if c == nil {
		return ClaimRecord{}
	}
	return c.prior
}

// record writes the claim's state durably.
func (c *Claim) record(state string, gen uint64) error {
	return c.write(ClaimRecord{State: state, Generation: gen})
}

func (c *Claim) write(r ClaimRecord) error {
	r.Version, r.Store, r.Host, r.Volume = claimVersion, c.prior.Store, c.prior.Host, c.prior.Volume
	r.PID, r.BootID, r.Updated = os.Getpid(), bootID(), time.Now().UTC()
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// Shorter content than before is padded with spaces rather than
	// truncated first, so no moment shows an empty file.
	if n := maxClaimSize / 2; len(data) < n {
		data = append(data, []byte(strings.Repeat(" ", n-len(data)))...)
	}
	if _, err := c.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("claim %s: %w", c.path, err)
	}
	if err := c.f.Truncate(int64(len(data))); err != nil {
		return fmt.Errorf("claim %s: %w", c.path, err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("claim %s: %w", c.path, err)
	}
	return nil
}

// Close lets the claim go. What it last recorded stays for the next run.
func (c *Claim) Close() error {
	if c == nil || c.f == nil {
		return nil
	}
	err := c.f.Close() // closing the only descriptor drops the flock
	c.f = nil
	return err
}

// bootID names this boot of the machine (informational: the lock alone
// proves that the process that wrote a claim is gone).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Watch returns st with the claim watching the writes of its volume's head
// record: while Acquire takes the lease, the exact record each attempt
// sends (its generation and nonce, unique to that write) is recorded
// durably before it is sent. A run killed before the answer came back is
// then still proven: if the store holds exactly that record, it is the
// dead run's lease, and the next run continues it at once. Give the
// lease.Manager that Acquire uses this store.
func (c *Claim) Watch(st transfer.ObjectStore) transfer.ObjectStore {
	return &watched{ObjectStore: st, c: c, key: lease.HeadKey(c.prior.Volume)}
}

type watched struct {
	transfer.ObjectStore
	c   *Claim
	key string
}

func (w *watched) PutIfAbsent(ctx context.Context, key string, data []byte) (string, error) {
	if err := w.note(key, data); err != nil {
		return "", err
	}
	return w.ObjectStore.PutIfAbsent(ctx, key, data)
}

func (w *watched) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (string, error) {
	if err := w.note(key, data); err != nil {
		return "", err
	}
	return w.ObjectStore.PutIfMatch(ctx, key, data, etag)
}

// note records an acquisition record about to be sent. A failure to
// record fails the write (a permanent error: retrying cannot help), so
// that no acquisition goes out unrecorded.
func (w *watched) note(key string, data []byte) error {
	if key != w.key || !w.c.acquiring.Load() {
		return nil
	}
	r, err := lease.Decode(data)
	if err != nil || r.State != lease.Held || r.Owner != w.c.prior.Host {
		return nil
	}
	if err := w.c.write(ClaimRecord{State: claimAcquiring, Generation: r.Generation, Nonce: r.Nonce}); err != nil {
		return fmt.Errorf("%w: %w", transfer.ErrPermanent, err)
	}
	return nil
}
