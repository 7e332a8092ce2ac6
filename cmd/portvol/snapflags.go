package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/internal/volname"
	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// snapFlags are the flags every snapshot command shares.
type snapFlags struct {
	store   string
	keyFile string
	json    bool
	// restorePrivileged is export's --restore-privileged.
	restorePrivileged bool
}

func (f *snapFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.store, "store", "", "object store URL (required): "+storeURLHelp)
	fs.StringVar(&f.keyFile, "encryption-key-file", "", "file holding the store's 32-byte encryption key (raw, 64 hex digits or base64); omit for an unencrypted store")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout and progress as JSON lines on stderr")
}

// check validates the flags that need no I/O; its errors are usage errors.
func (f *snapFlags) check() error {
	if f.store == "" {
		return usageError{errors.New("--store is required (or set PORTVOL_STORE): " + storeURLHelp)}
	}
	if _, err := parseStoreURL(f.store); err != nil {
		return err
	}
	return nil
}

// where names the store in messages, without credentials.
func (f *snapFlags) where() string { return redactURL(f.store) }

// readKey reads the encryption key file, if one was given. Its errors name
// the file, never its contents.
func (f *snapFlags) readKey() ([]byte, error) {
	if f.keyFile == "" {
		return nil, nil
	}
	data, err := readBoundedFile(f.keyFile, maxKeyFile)
	if err != nil {
		return nil, keyFileError(f.keyFile, err)
	}
	key, err := snapshot.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w: a key is 32 bytes, raw, as 64 hex digits or in base64", f.keyFile, err)
	}
	return key, nil
}

// session is an open store, guarded by its identity.
type session struct {
	flags *snapFlags
	store transfer.ObjectStore
	raw   transfer.ObjectStore // without the identity guard (proveWrites)
	key   []byte
	id    string // the store's store_id
}

// openSession opens the existing store and its snapshot repository. No
// command but portvol init creates a store: a mistyped file:// path or
// bucket name fails, it never leaves an empty store behind. write says
// the command will write, so the store must prove it honours conditional
// writes first.
func (f *snapFlags) openSession(ctx context.Context, write bool) (*session, *snapshot.Repo, error) {
	key, err := f.readKey()
	if err != nil {
		return nil, nil, err
	}
	s := &session{flags: f, key: key}
	c, err := connect(ctx, f.store, connectOptions{
		write: write,
		repo:  snapshot.Options{Key: key, RestorePrivileged: f.restorePrivileged},
	})
	if err != nil {
		return nil, nil, s.repoError(err)
	}
	s.store, s.raw, s.id = c.store, c.raw, c.id
	return s, c.repo, nil
}

// proveWrites has the store prove that it honours conditional writes: a
// session opened without write does so before its first write.
func (s *session) proveWrites(ctx context.Context) error {
	return proveConditional(ctx, s.raw, s.flags.where())
}

// openRepo opens the store for reading and its snapshot repository.
func (f *snapFlags) openRepo(ctx context.Context) (*session, *snapshot.Repo, error) {
	return f.openSession(ctx, false)
}

// repoError explains a failure to open the repository.
func (s *session) repoError(err error) error {
	where := s.flags.where()
	switch {
	case errors.Is(err, snapshot.ErrKeyRequired):
		return codedError{code: exitKey, err: fmt.Errorf("store %s is encrypted: pass its key with --encryption-key-file (or PORTVOL_ENCRYPTION_KEY_FILE): %w", where, snapshot.ErrKeyRequired)}
	case errors.Is(err, snapshot.ErrWrongKey):
		return codedError{code: exitKey, err: fmt.Errorf("store %s: the key in %s is not this store's encryption key; use the key the store was created with", where, s.flags.keyFile)}
	}
	return err // connect's errors name the store
}

// storeError names the store in an error of reading it.
func (s *session) storeError(err error) error {
	return fmt.Errorf("store %s: %w", s.flags.where(), err)
}

// cliHostID is the host id the command line writes with: the hostname
// with a "-cli" suffix, so it never collides with the plugin's own id.
func cliHostID(hostname func() (string, error)) (string, error) {
	h, err := hostname()
	if err != nil {
		return "", fmt.Errorf("cannot tell this host's name (%w): pass --host-id", err)
	}
	id := h + "-cli"
	if err := lease.CheckHost(id); err != nil {
		return "", usageError{fmt.Errorf("the hostname %q does not make a valid host id: pass --host-id", h)}
	}
	return id, nil
}

// headOf returns the volume's published head snapshot. A volume without a
// record and without a head does not exist; one with a record but no head
// has no snapshot yet.
func (s *session) headOf(ctx context.Context, volume string) (string, error) {
	host, err := cliHostID(os.Hostname)
	if err != nil {
		host = "portvol-cli" // only reads: the id is never written
	}
	m, err := lease.New(s.store, lease.Options{Host: host})
	if err != nil {
		return "", err
	}
	o, err := m.Inspect(ctx, volume)
	if err != nil {
		return "", err
	}
	if o.Exists && o.Record.State == lease.Removed {
		return "", fmt.Errorf("volume %q was removed from store %s (by host %q); its snapshots are kept: name one with --snapshot", volume, s.flags.where(), o.Record.Owner)
	}
	if o.Exists && o.Record.Head != "" {
		return o.Record.Head, nil
	}
	if err := s.checkVolume(ctx, volume); err != nil {
		return "", err
	}
	return "", fmt.Errorf("volume %q has no published snapshot in store %s yet: create one with portvol import, or name one with --snapshot", volume, s.flags.where())
}

// checkVolume fails if the store has no record of volume.
func (s *session) checkVolume(ctx context.Context, volume string) error {
	_, err := catalog.Get(ctx, s.store, volume)
	if errors.Is(err, catalog.ErrNotFound) {
		return fmt.Errorf("volume %q does not exist in store %s: check the name and --store", volume, s.flags.where())
	}
	return err
}

// checkVolumeArg validates a VOLUME argument.
func checkVolumeArg(name string) error {
	if err := volname.Check(name); err != nil {
		return usageError{err}
	}
	return nil
}

// checkSnapshotArg validates a --snapshot argument.
func checkSnapshotArg(id string) error {
	if id != "" && !snapshot.ValidSnapshotID(id) {
		return usageError{fmt.Errorf("--snapshot %q: a snapshot ID looks like 20060102T150405Z-0123456789abcdef (see portvol snapshots)", id)}
	}
	return nil
}

// absDir makes a directory argument absolute.
func absDir(what, p string) (string, error) {
	if p == "" {
		return "", usageError{fmt.Errorf("%s: empty path", what)}
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", usageError{fmt.Errorf("%s %q: %w", what, p, err)}
	}
	return a, nil
}

// exactArgs is cobra.ExactArgs with a usage error that names the
// arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s takes %d arguments (%s), got %d; see portvol %s --help",
				cmd.Name(), len(names), strings.Join(names, " "), len(args), cmd.Name())}
		}
		return nil
	}
}

// writeJSON prints v as one JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
