package driver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/portvol/portvol/metadata"
)

// removeTrash deletes a removed volume's data. Failures are logged and
// retried at the next start.
func (d *Driver) removeTrash(path string) {
	if err := os.RemoveAll(path); err != nil {
		d.log.WithField("path", path).WithError(err).Warn("could not delete a removed volume's data; the next start retries")
	}
}

// measureLater measures the size of name's data in the background and
// stores it in the volume's record.
func (d *Driver) measureLater(name string) {
	d.goBackground(func(ctx context.Context) {
		if err := d.measure(ctx, name); err != nil && !errors.Is(err, context.Canceled) {
			d.log.WithField("volume", name).WithError(err).Warn("could not measure the volume's size")
		}
	})
}

func (d *Driver) measure(ctx context.Context, name string) error {
	start := time.Now().UTC()
	size, err := dirSize(ctx, d.dataDir(name))
	if err != nil {
		return err
	}
	var used int64
	if rec, err := d.db.Volume(ctx, name); err == nil {
		if c, err := d.localOf(rec); err == nil {
			if u, err := c.Usage(ctx, name); err == nil {
				used = u.Used
			}
		}
	}
	err = d.db.UpdateVolume(ctx, name, func(v *metadata.Volume) error {
		v.SizeBytes, v.UsedBytes, v.SizeAt = size, used, start
		return nil
	})
	if errors.Is(err, metadata.ErrNotFound) {
		return nil // removed meanwhile
	}
	return err
}

// dirSize sums the sizes of the regular files under dir, without following
// symlinks.
func dirSize(ctx context.Context, dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while we walk
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}
