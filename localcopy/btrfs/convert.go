package btrfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/portvol/portvol/localcopy"
)

// Convert implements localcopy.Converter. The copy is made in a new
// subvolume beside the volume's live path, committed (syncfs), then put
// in place with one rename: an exchange when dir is the live path (a
// btrfs state directory, where directory volumes and subvolumes share
// the layout), a rename otherwise. dir is deleted last; a crash before
// that leaves both, and the subvolume is the volume (it is only put in
// place once complete).
func (c *Copies) Convert(ctx context.Context, name, dir string) error {
	if err := localcopy.CheckName(name); err != nil {
		return err
	}
	live := c.Path(name)
	inPlace := filepath.Clean(dir) == live
	if ok, err := isSubvolume(live); err != nil {
		return fmt.Errorf("volume %q: %w", name, err)
	} else if ok {
		return fmt.Errorf("volume %q: it is a subvolume already: %w", name, localcopy.ErrExists)
	}
	if !inPlace {
		if _, err := os.Lstat(live); err == nil {
			return fmt.Errorf("volume %q: %s exists and is not a subvolume: %w", name, live, localcopy.ErrExists)
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("volume %q: %s: %w", name, dir, localcopy.ErrNotFound)
		}
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("volume %q: %s is not a directory: %w", name, dir, localcopy.ErrInvalid)
	}
	tmp, err := c.newSubvolume(ctx, name, createPrefix, localcopy.CreateOptions{})
	if err != nil {
		return err
	}
	if err := copyTree(ctx, dir, tmp); err != nil {
		_ = deleteSubvolume(tmp)
		return fmt.Errorf("volume %q: copying %s into a subvolume: %w", name, dir, mapSpace(err))
	}
	if err := syncFS(tmp); err != nil {
		_ = deleteSubvolume(tmp)
		return fmt.Errorf("volume %q: %w", name, err)
	}
	if inPlace {
		err = localcopy.SwapIn(tmp, live) // tmp now holds the directory
	} else {
		err = localcopy.MoveNoReplace(tmp, live)
	}
	if err != nil {
		_ = deleteSubvolume(tmp)
		return fmt.Errorf("volume %q: %w", name, err)
	}
	old := dir
	if inPlace {
		old = tmp
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("volume %q: converted, but removing the old directory %s failed: %w", name, old, err)
	}
	return nil
}
