package volname

import (
	"errors"
	"fmt"
)

// MaxLen is the longest volume name accepted.
const MaxLen = 128

// ErrInvalid is wrapped by every error Check returns.
var ErrInvalid = errors.New("invalid volume name")

// Valid reports whether name is a valid volume name.
func Valid(name string) bool {
	if name == "" || len(name) > MaxLen || !alnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Check returns nil for a valid name, else an error wrapping ErrInvalid
// that says what is wrong with it and what the rule is. A long name is
// shown shortened.
func Check(name string) error {
	if Valid(name) {
		return nil
	}
	shown := name
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	var why string
	switch {
	case name == "":
		why = "it is empty"
	case len(name) > MaxLen:
		why = fmt.Sprintf("it is %d characters long, the limit is %d", len(name), MaxLen)
	default:
		why = "it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
	}
	return fmt.Errorf("%w %q: %s (1-%d characters)", ErrInvalid, shown, why, MaxLen)
}
