package localcopy

import (
	"fmt"
	"strings"
)

// CheckName refuses names that are not one plain path element, or that
// start with '.' (the implementations' own entries do). The driver
// validates volume names more strictly; this is the last line before a
// name becomes a path.
func CheckName(name string) error {
	switch {
	case name == "" || len(name) > 200:
		return fmt.Errorf("name %q: %w: 1 to 200 characters", name, ErrInvalid)
	case strings.ContainsAny(name, "/\x00"), strings.HasPrefix(name, "."):
		return fmt.Errorf("name %q: %w: a plain name that does not start with '.'", name, ErrInvalid)
	}
	return nil
}
