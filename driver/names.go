package driver

import (
	"fmt"
	"regexp"
)

// MaxNameLen is the longest volume name accepted.
const MaxNameLen = 128

// nameRE: a name is used as one path component, so it must not contain a
// slash, start with a dot ("." and ".." are paths) or be empty. dockerd
// passes plugin volume names through unchecked ("../x" arrives verbatim).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidateName reports whether name can be a portvol volume name.
func ValidateName(name string) error {
	if nameRE.MatchString(name) {
		return nil
	}
	shown := name
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	why := "it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
	if len(name) > MaxNameLen {
		why = fmt.Sprintf("it is %d characters long, the limit is %d", len(name), MaxNameLen)
	} else if name == "" {
		why = "it is empty"
	}
	return errorf(ErrInvalid, "invalid volume name %q: %s", shown, why)
}

// maxIDLen bounds mount IDs (dockerd sends 64 hex digits).
const maxIDLen = 256

func validateID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return errorf(ErrInvalid, "invalid mount ID (length %d): expected a non-empty ID of at most %d bytes", len(id), maxIDLen)
	}
	return nil
}
