package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors. Callers test them with errors.Is; the returned errors
// wrap them with the volume name or path.
var (
	// ErrNotFound: no record under that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: CreateVolume found a record under that name.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process holds the database open.
	ErrLocked = errors.New("state database is locked")
)

const (
	schemaVersion = "1"
	// DefaultTimeout is how long Open waits for another process to release
	// the database file before it gives up with ErrLocked.
	DefaultTimeout = time.Second
)

var (
	bucketMeta    = []byte("meta")
	bucketVolumes = []byte("volumes")
	bucketMounts  = []byte("mounts")
	keySchema     = []byte("schema")
	keyHostID     = []byte("host_id")
)

// Options tunes Open. The zero value means defaults.
type Options struct {
	// Timeout is how long to wait for the file lock; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DB is an open state database. It is safe for concurrent use: reads run in
// parallel with each other and with one writer.
type DB struct {
	bolt *bolt.DB
	path string
}

// Open opens (creating if needed) the state database at path. If another
// process holds it, Open fails after opts.Timeout with an error wrapping
// ErrLocked that names the pid recorded by that process.
func Open(path string, opts Options) (*DB, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		owner := "unknown pid"
		if pid, rerr := os.ReadFile(path + ".pid"); rerr == nil {
			owner = "pid " + strings.TrimSpace(string(pid))
		}
		return nil, fmt.Errorf("open %s: %w: is another portvol (%s) using this state directory? Stop it or give this one another --state-dir", path, ErrLocked, owner)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path}
	if err := db.init(); err != nil {
		_ = b.Close()
		return nil, err
	}
	// Best effort: only used to name the owner in ErrLocked messages.
	_ = os.WriteFile(path+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return db, nil
}

func (db *DB) init() error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketVolumes, bucketMounts} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema version %q, this portvol understands %q: use a portvol at least as new as the one that wrote it", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initialise state database %s: %w", db.path, err)
	}
	return nil
}

// Close releases the database file.
func (db *DB) Close() error {
	_ = os.Remove(db.path + ".pid")
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close state database %s: %w", db.path, err)
	}
	return nil
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// HostID returns the stored host id, or an error wrapping ErrNotFound.
func (db *DB) HostID(ctx context.Context) (string, error) {
	var id string
	err := db.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyHostID)
		if v == nil {
			return fmt.Errorf("host id: %w", ErrNotFound)
		}
		id = string(v)
		return nil
	})
	return id, err
}

// SetHostID stores the host id.
func (db *DB) SetHostID(ctx context.Context, id string) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyHostID, []byte(id))
	})
}

// view runs fn in a read transaction unless ctx is already done.
func (db *DB) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.View(fn)
}

// update runs fn in a write transaction unless ctx is already done. The
// transaction is short: callers never do volume I/O inside it.
func (db *DB) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.Update(fn)
}
