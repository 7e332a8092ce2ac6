package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
	"github.com/portvol/portvol/writer"
)

// Exit codes. The numbers above 2 are restic's (0.17 and later) for the
// same situations, so that scripts written for one read the other.
const (
	exitOK          = 0
	exitError       = 1   // the operation failed; the message says why and what to do
	exitUsage       = 2   // bad flags or arguments; nothing was changed
	exitNoStore     = 10  // no portvol store at that URL (restic: repository does not exist)
	exitHeld        = 11  // the volume is held by another host (restic: repository locked)
	exitKey         = 12  // the encryption key is missing or wrong (restic: wrong password)
	exitInterrupted = 130 // stopped by Ctrl-C or SIGTERM (128 + SIGINT)
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// codedError carries an exit code decided where the error was made.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// pluginError is an error the running plugin answered, with its kind
// (driver's admin protocol: "held", "key", "not_found", ...).
type pluginError struct {
	msg, kind string
}

func (e *pluginError) Error() string { return e.msg }

// exitCode maps the error a command returned to the process exit code.
// ctx is the command's context: once a signal ended it, whatever the
// command returned, the answer is 130.
func exitCode(ctx context.Context, err error) int {
	var ue usageError
	var ee codedError
	var pe *pluginError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil:
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &pe):
		switch pe.kind {
		case "held":
			return exitHeld
		case "key":
			return exitKey
		}
		return exitError
	case errors.Is(err, lease.ErrHeld), errors.Is(err, writer.ErrBusy):
		return exitHeld
	case isKeyError(err):
		return exitKey
	case errors.Is(err, snapshot.ErrNotInitialized), errors.Is(err, transfer.ErrStoreMissing):
		return exitNoStore
	}
	return exitError
}

func isKeyError(err error) bool {
	for _, e := range []error{snapshot.ErrKeyRequired, snapshot.ErrWrongKey, snapshot.ErrNotEncrypted, snapshot.ErrBadKey} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// keyFileError explains a key file that cannot be read: a missing key is
// one of the key errors (exit 12).
func keyFileError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return codedError{code: exitKey, err: fmt.Errorf("encryption key file %s does not exist: give the path of the key file the store was first used with (--encryption-key-file or PORTVOL_ENCRYPTION_KEY_FILE); a new key is made with: head -c 32 /dev/urandom | base64 > FILE", path)}
	}
	return codedError{code: exitKey, err: fmt.Errorf("reading encryption key file %s: %w: check its path and permissions", path, err)}
}
