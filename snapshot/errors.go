package snapshot

import "errors"

// Sentinel errors. Returned errors wrap them with the volume, snapshot or
// object concerned; test with errors.Is.
var (
	// ErrNotInitialized: the store has no snapshot configuration object.
	ErrNotInitialized = errors.New("store is not initialized for snapshots: initialize it first")

	// ErrConfigMismatch: Init found a configuration that differs from the
	// one requested (for example encrypted versus not).
	ErrConfigMismatch = errors.New("store is already initialized with different settings")

	// ErrKeyRequired: the store is encrypted and no key was given.
	ErrKeyRequired = errors.New("store is encrypted: pass --encryption-key-file")

	// ErrWrongKey: the key given is not the store's key.
	ErrWrongKey = errors.New("encryption key does not match this store")

	// ErrNotEncrypted: a key was given for a store that is not encrypted.
	ErrNotEncrypted = errors.New("store is not encrypted but an encryption key was given: drop --encryption-key-file or use an encrypted store")

	// ErrBadKey: the key material is not a 32-byte key.
	ErrBadKey = errors.New("encryption key must be 32 bytes (raw, 64 hex digits or base64)")

	// ErrUnsupportedVersion: an object was written by a newer format
	// version. The wrapping error names both versions.
	ErrUnsupportedVersion = errors.New("unsupported snapshot format version: upgrade portvol to use this store")

	// ErrNotFound: the snapshot does not exist.
	ErrNotFound = errors.New("snapshot not found")

	// ErrCorrupt: an object failed verification (tampered, truncated,
	// missing or malformed). The wrapping error names the object.
	ErrCorrupt = errors.New("snapshot data is corrupt")

	// ErrInvalid: a caller-supplied argument (volume name, snapshot ID,
	// directory) is unusable.
	ErrInvalid = errors.New("invalid argument")

	// ErrPrivileged: a snapshot in an unencrypted store would plant device
	// nodes, setuid or setgid files or file capabilities, and the caller
	// did not allow it (Options.RestorePrivileged).
	ErrPrivileged = errors.New("an unencrypted store may not plant device nodes, setuid/setgid files or file capabilities")

	// ErrChanged: a file changed in a way that makes the snapshot
	// inconsistent while it was being read (replaced by another file).
	ErrChanged = errors.New("file changed while being snapshotted: retry with the volume not in use")
)
