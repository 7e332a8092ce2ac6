package prune

import (
	"slices"
	"strings"
)

func sortDecisions(ds []Decision) {
	slices.SortFunc(ds, func(a, b Decision) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}
