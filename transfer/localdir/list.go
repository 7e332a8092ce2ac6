package localdir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portvol/portvol/transfer"
)

// List implements transfer.ObjectStore. It walks only the directories the
// prefix can match and yields keys in lexical order without collecting
// them first.
func (s *Store) List(ctx context.Context, prefix string, fn func(transfer.ObjectInfo) error) error {
	if err := transfer.CheckPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Start in the deepest directory the prefix names in full.
	dir := prefix[:strings.LastIndex(prefix, "/")+1]
	return s.walk(ctx, dir, prefix, fn)
}

type entry struct {
	name  string // sort name: a directory's name ends with "/"
	isDir bool
}

// walk lists the objects below the relative directory rel ("" or ending
// in "/"). Sorting a directory's entries with "/" appended to
// subdirectory names puts every key of a subdirectory exactly where it
// belongs in byte order: "a-c" < "a/b" < "a0".
func (s *Store) walk(ctx context.Context, rel, prefix string, fn func(transfer.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	des, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(rel)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || isNotDir(err) {
			return nil
		}
		return fmt.Errorf("list %q: %w", prefix, fsError(err))
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if rel == "" && name == metaDir {
			continue
		}
		switch {
		case de.IsDir():
			entries = append(entries, entry{name: name + "/", isDir: true})
		case de.Type().IsRegular():
			entries = append(entries, entry{name: name})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	for _, e := range entries {
		full := rel + e.name
		if e.isDir {
			if strings.HasPrefix(full, prefix) || strings.HasPrefix(prefix, full) {
				if err := s.walk(ctx, full, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(full, prefix) || transfer.CheckKey(full) != nil {
			continue // not ours, or a file no key can name
		}
		oi, err := s.Stat(ctx, full)
		if errors.Is(err, transfer.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}
