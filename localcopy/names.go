package localcopy

import (
	"fmt"

	"github.com/portvol/portvol/internal/volname"
)

// CheckName refuses what is not a volume name (internal/volname's rule:
// one path element of A-Z a-z 0-9 _ . -, starting with a letter or a
// digit). Aside names (fenced-7-20261204T101500Z) obey it too, and the
// implementations' own entries start with '.', so no name given can
// reach them. It is the last check before a name becomes a path.
func CheckName(name string) error {
	if err := volname.Check(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
