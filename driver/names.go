package driver

import "github.com/portvol/portvol/internal/volname"

// ValidateName reports whether name can be a portvol volume name (the
// rule is volname's). A name is used as one path component; dockerd passes
// plugin volume names through unchecked ("../x" arrives verbatim).
func ValidateName(name string) error {
	if err := volname.Check(name); err != nil {
		return &kindError{kind: ErrInvalid, cause: err, msg: err.Error()}
	}
	return nil
}

// maxIDLen bounds mount IDs (dockerd sends 64 hex digits).
const maxIDLen = 256

func validateID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return errorf(ErrInvalid, "invalid mount ID (length %d): expected a non-empty ID of at most %d bytes", len(id), maxIDLen)
	}
	return nil
}
