package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/portvol/portvol/transfer"
)

// FormatVersion is the version of the on-store format this package writes.
// Version 1 stores and snapshots stay readable (doc.go, "Versions").
const FormatVersion = 2

const (
	formatName         = "portvol-snapshot-store"
	defaultBlockSize   = 16 << 10 // doc.go, "Chunking"
	minBlockSize       = 4 << 10
	maxBlockSize       = 8 << 20
	minBlockSizeV1     = 64 << 10
	defaultPackSize    = 16 << 20
	maxConfigSize      = 4 << 10
	encryptionNone     = "none"
	encryptionAES256GC = "aes-256-gcm"
)

// storeConfig is the JSON object at key "config" (doc.go).
type storeConfig struct {
	Format      string `json:"format"`
	Version     int    `json:"version"`
	StoreID     string `json:"store_id"`
	Chunking    string `json:"chunking"`
	BlockSize   int    `json:"block_size"`
	Compression string `json:"compression"`
	Encryption  string `json:"encryption"`
	KeyCheck    string `json:"key_check,omitempty"`
}

func (c *storeConfig) validate() error {
	if c.Format != formatName {
		return fmt.Errorf("object %q is not a portvol snapshot store config: %w", configKey, ErrCorrupt)
	}
	if c.Version > FormatVersion {
		return newerFormat(c.Version)
	}
	if c.Version < 1 {
		return fmt.Errorf("store config %q: version %d: %w", configKey, c.Version, ErrCorrupt)
	}
	id, err := hex.DecodeString(c.StoreID)
	if err != nil || len(id) != 16 {
		return fmt.Errorf("store config %q: bad store_id: %w", configKey, ErrCorrupt)
	}
	lo := minBlockSize
	if c.Version == 1 {
		lo = minBlockSizeV1
	}
	if c.Chunking != "fixed" || c.BlockSize < lo || c.BlockSize > maxBlockSize || c.BlockSize&(c.BlockSize-1) != 0 {
		return fmt.Errorf("store config %q: unsupported chunking %q with block size %d: %w", configKey, c.Chunking, c.BlockSize, ErrCorrupt)
	}
	if _, ok := codecByName(c.Compression); !ok || (c.Version == 1 && c.Compression != "zstd") {
		return fmt.Errorf("store config %q: unsupported compression %q: %w", configKey, c.Compression, ErrCorrupt)
	}
	switch c.Encryption {
	case encryptionNone:
		if c.KeyCheck != "" {
			return fmt.Errorf("store config %q: key_check without encryption: %w", configKey, ErrCorrupt)
		}
	case encryptionAES256GC:
		if k, err := hex.DecodeString(c.KeyCheck); err != nil || len(k) != 32 {
			return fmt.Errorf("store config %q: bad key_check: %w", configKey, ErrCorrupt)
		}
	default:
		return fmt.Errorf("store config %q: unsupported encryption %q: %w", configKey, c.Encryption, ErrCorrupt)
	}
	return nil
}

func parseConfig(data []byte) (*storeConfig, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("store config %q is %d bytes: %w", configKey, len(data), ErrCorrupt)
	}
	var c storeConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// A newer version may add fields; say so rather than "corrupt".
		var probe struct {
			Version int `json:"version"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Version > FormatVersion {
			return nil, newerFormat(probe.Version)
		}
		return nil, fmt.Errorf("store config %q: %w", configKey, errors.Join(ErrCorrupt, err))
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// newerFormat is the error for a store written by a newer portvol: this
// build neither reads nor writes it, since it cannot know what the newer
// format's invariants are.
func newerFormat(v int) error {
	return fmt.Errorf("the store has format version %d, this portvol knows format version %d only and neither reads nor writes it: %w", v, FormatVersion, ErrUnsupportedVersion)
}

func (c *storeConfig) storeID() []byte {
	id, _ := hex.DecodeString(c.StoreID)
	return id
}

// InitOptions configures a new store.
type InitOptions struct {
	// Key is the 32-byte master key; nil creates an unencrypted store.
	Key []byte
	// BlockSize is the chunk size, a power of two from 4 KiB to 8 MiB;
	// 0 means 16 KiB.
	BlockSize int
	// Compression names the codec new chunks are stored with: "s2" (the
	// default: fastest) or "zstd" (smaller on text-like data, slower);
	// see doc.go.
	Compression string
}

// Init writes the store configuration if the store has none. On a store
// that is already initialized it succeeds if the existing configuration
// agrees with opts (same encryption, same key, same block size if one was
// given) and fails with ErrConfigMismatch, ErrWrongKey or ErrKeyRequired
// otherwise. Concurrent Inits are safe: exactly one configuration wins.
func Init(ctx context.Context, store transfer.ObjectStore, opts InitOptions) error {
	bs := opts.BlockSize
	if bs == 0 {
		bs = defaultBlockSize
	}
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d: must be a power of two from %d to %d: %w", bs, minBlockSize, maxBlockSize, ErrInvalid)
	}
	if opts.Key != nil && len(opts.Key) != KeySize {
		return ErrBadKey
	}
	comp := opts.Compression
	if comp == "" {
		comp = defaultCodec.String()
	}
	if _, ok := codecByName(comp); !ok {
		return fmt.Errorf("compression %q: want s2 or zstd: %w", comp, ErrInvalid)
	}
	sid := make([]byte, 16)
	if _, err := rand.Read(sid); err != nil {
		return err
	}
	cfg := storeConfig{
		Format: formatName, Version: FormatVersion, StoreID: hex.EncodeToString(sid),
		Chunking: "fixed", BlockSize: bs, Compression: comp, Encryption: encryptionNone,
	}
	if opts.Key != nil {
		_, _, check := deriveKeys(opts.Key, sid)
		cfg.Encryption = encryptionAES256GC
		cfg.KeyCheck = hex.EncodeToString(check)
	}
	data, err := json.MarshalIndent(&cfg, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	_, err = store.PutIfAbsent(ctx, configKey, data)
	if err == nil {
		return nil
	}
	if !errors.Is(err, transfer.ErrPrecondition) {
		return fmt.Errorf("writing store config: %w", err)
	}
	// Someone initialized the store: accept it if it agrees.
	existing, err := loadConfig(ctx, store)
	if err != nil {
		return err
	}
	if opts.BlockSize != 0 && existing.newBlockSize() != opts.BlockSize {
		return fmt.Errorf("store has block size %d, not %d: %w", existing.newBlockSize(), opts.BlockSize, ErrConfigMismatch)
	}
	if opts.Compression != "" && existing.newCodec().String() != opts.Compression {
		return fmt.Errorf("store compresses with %s, not %s: %w", existing.newCodec(), opts.Compression, ErrConfigMismatch)
	}
	_, err = newRepoCryptor(existing, opts.Key)
	return err
}

// newBlockSize is the chunk size of the snapshots Create writes. A format
// 1 store's block_size describes its format 1 snapshots; new snapshots in
// it are format 2 with the format 2 default (doc.go, "Versions").
func (c *storeConfig) newBlockSize() int {
	if c.Version == 1 {
		return defaultBlockSize
	}
	return c.BlockSize
}

// newCodec is the codec new chunks are stored with.
func (c *storeConfig) newCodec() Codec {
	if c.Version == 1 {
		return defaultCodec
	}
	k, _ := codecByName(c.Compression)
	return k
}

func loadConfig(ctx context.Context, store transfer.ObjectStore) (*storeConfig, error) {
	data, _, err := store.Load(ctx, configKey, maxConfigSize)
	if errors.Is(err, transfer.ErrNotExist) {
		return nil, ErrNotInitialized
	}
	if errors.Is(err, transfer.ErrTooLarge) {
		return nil, fmt.Errorf("store config: %w: %w", ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading store config: %w", err)
	}
	return parseConfig(data)
}

func newRepoCryptor(cfg *storeConfig, key []byte) (*cryptor, error) {
	switch {
	case cfg.Encryption == encryptionNone && key != nil:
		return nil, ErrNotEncrypted
	case cfg.Encryption == encryptionNone:
		return &cryptor{}, nil
	case key == nil:
		return nil, ErrKeyRequired
	}
	check, _ := hex.DecodeString(cfg.KeyCheck)
	return newCryptor(key, cfg.storeID(), check)
}

// Options configures a Repo. Zero values mean defaults.
type Options struct {
	// Key is the 32-byte master key of an encrypted store (see ParseKey);
	// nil for an unencrypted store.
	Key []byte
	// Workers is the number of goroutines that hash, compress and
	// encrypt; 0 means GOMAXPROCS.
	Workers int
	// Transfers is the number of store requests in flight; 0 means 4,
	// and 16 for a restore's ranged reads (see restoreFetchers).
	// Create uploads Transfers/2 packs at a time (at most 4), each held
	// in memory (~17 MiB).
	Transfers int
	// Fossils, if set, tells Create which packs a prune is about to delete,
	// so that no snapshot references them (guard.go). Every writer of a
	// store that is pruned must set it; package prune provides it.
	Fossils Fossils
	// Now is the wall clock snapshot IDs and times are taken from; nil
	// means time.Now. Simulations with a fake clock set it.
	Now func() time.Time
	// GuardWindow is how long the last look before a manifest write stays
	// good (guard.go); 0 means one minute. Simulations with short prune
	// margins shorten it.
	GuardWindow time.Duration
	// RestorePrivileged lets Restore from an unencrypted store create
	// device nodes, setuid and setgid files and files with capabilities
	// (security.capability). Without it such a snapshot fails with
	// ErrPrivileged: whoever can write to an unencrypted store can forge
	// its manifests. Encrypted stores authenticate every manifest, so their
	// snapshots restore in full either way.
	RestorePrivileged bool
}

// Repo reads and writes snapshots in one store. It is safe for
// concurrent use; concurrent Creates of the same volume are the caller's
// to prevent (the lease does).
type Repo struct {
	store     transfer.ObjectStore
	cfg       *storeConfig
	crypt     *cryptor
	workers   int
	transfers int
	// fetchers is how many ranged reads a restore keeps in flight.
	fetchers int
	// restorePrivileged: see Options.RestorePrivileged.
	restorePrivileged bool
	blockSize         int   // of new snapshots
	codec             Codec // of new chunks
	packSize          int   // target pack size; tests lower it

	racyWindow time.Duration // see defaultRacyWindow; tests lower it
	fossils    Fossils
	now        func() time.Time
	window     time.Duration
}

// Open reads the store configuration and checks the key against it.
// Errors: ErrNotInitialized, ErrKeyRequired, ErrWrongKey, ErrNotEncrypted,
// ErrBadKey, ErrUnsupportedVersion, ErrCorrupt, or the store's error.
func Open(ctx context.Context, store transfer.ObjectStore, opts Options) (*Repo, error) {
	if opts.Key != nil && len(opts.Key) != KeySize {
		return nil, ErrBadKey
	}
	cfg, err := loadConfig(ctx, store)
	if err != nil {
		return nil, err
	}
	c, err := newRepoCryptor(cfg, opts.Key)
	if err != nil {
		return nil, err
	}
	r := &Repo{
		store: store, cfg: cfg, crypt: c,
		workers: opts.Workers, transfers: opts.Transfers, restorePrivileged: opts.RestorePrivileged,
		fossils: opts.Fossils, now: opts.Now, window: opts.GuardWindow,
		blockSize: cfg.newBlockSize(), codec: cfg.newCodec(), packSize: defaultPackSize, racyWindow: defaultRacyWindow,
	}
	if r.workers <= 0 {
		r.workers = runtime.GOMAXPROCS(0)
	}
	r.fetchers = r.transfers
	if r.transfers <= 0 {
		r.transfers = 4
		r.fetchers = restoreFetchers
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.window <= 0 {
		r.window = guardWindow
	}
	return r, nil
}

// StoreID returns the store's identity: the store_id of its configuration
// (32 hex digits), fixed when the store was initialized. A host remembers
// the store it joined by it.
func (r *Repo) StoreID() string { return r.cfg.StoreID }

// ReadStoreID reads the store_id of store's configuration now. A store
// without one (missing, emptied, never initialized) fails with
// ErrNotInitialized.
func ReadStoreID(ctx context.Context, store transfer.ObjectStore) (string, error) {
	cfg, err := loadConfig(ctx, store)
	if err != nil {
		return "", err
	}
	return cfg.StoreID, nil
}

// Encrypted reports whether the store encrypts its contents.
func (r *Repo) Encrypted() bool { return r.crypt.encrypted() }

// BlockSize returns the chunk size of the snapshots Create writes.
func (r *Repo) BlockSize() int { return r.blockSize }
