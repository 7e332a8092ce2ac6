package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/localcopy"
	"github.com/portvol/portvol/localcopy/btrfs"
)

// Values of --volume-fs.
const (
	volumeFSAuto = "auto"
)

// checkVolumeFSFlags validates --volume-fs and --pool-size.
func (o *serveOptions) checkVolumeFSFlags() error {
	switch o.volumeFS = strings.ToLower(strings.TrimSpace(o.volumeFS)); o.volumeFS {
	case volumeFSAuto, localcopy.FilesystemBtrfs, localcopy.FilesystemDirectory:
	default:
		return fmt.Errorf("--volume-fs %q: use auto, btrfs or directory", o.volumeFS)
	}
	o.poolSizeBytes = 0
	if o.poolSize != "" {
		n, err := localcopy.ParseSize(o.poolSize)
		if err != nil {
			return fmt.Errorf("--pool-size: %w", err)
		}
		if n < 256<<20 {
			return fmt.Errorf("--pool-size %s: a btrfs pool needs at least 256M", o.poolSize)
		}
		o.poolSizeBytes = n
	}
	return nil
}

// resolveVolumeFS decides where volume data lives and says why (logged
// once at start): auto is btrfs when the kernel has it.
func resolveVolumeFS(choice string) (fs, why string, err error) {
	avail := btrfs.Available()
	switch choice {
	case localcopy.FilesystemDirectory:
		return localcopy.FilesystemDirectory, "--volume-fs directory", nil
	case localcopy.FilesystemBtrfs:
		if avail != nil {
			return "", "", avail
		}
		return localcopy.FilesystemBtrfs, "--volume-fs btrfs", nil
	}
	if avail != nil {
		return localcopy.FilesystemDirectory, "auto: " + avail.Error(), nil
	}
	return localcopy.FilesystemBtrfs, "auto: the kernel has btrfs", nil
}

// openVolumeFS decides where new volume copies live, logs it once, and
// prepares it: for btrfs the pool is made, attached and mounted (or found
// so), and a subvolume is created, snapshotted and deleted, so a host (or
// managed plugin) that cannot do it says why at start. --volume-fs btrfs
// fails then; auto falls back to directories with a warning. nil means
// directories (the driver's default).
func openVolumeFS(ctx context.Context, o serveOptions, log logrus.FieldLogger) (localcopy.Copies, error) {
	fs, why, err := resolveVolumeFS(o.volumeFS)
	if err != nil {
		return nil, err
	}
	log = log.WithField("volume_fs", fs).WithField("reason", why)
	if fs == localcopy.FilesystemDirectory {
		log.Info("volumes are kept in directories: periodic snapshots are file by file, size limits cannot be enforced")
		return nil, nil
	}
	c, err := openBtrfs(ctx, o)
	if err != nil {
		if o.volumeFS == localcopy.FilesystemBtrfs {
			return nil, fmt.Errorf("--volume-fs btrfs: %w", err)
		}
		log.WithError(err).Warn("auto: btrfs cannot be used here; volumes are kept in directories (periodic snapshots file by file, no size limits): fix the cause, or set --volume-fs directory to silence this")
		return nil, nil
	}
	fields := logrus.Fields{"root": c.Root()}
	if p := c.Pool(); p != nil {
		size, free, err := p.Space()
		if err != nil {
			return nil, fmt.Errorf("--volume-fs btrfs: %w", err)
		}
		fields["pool_image"], fields["pool_device"], fields["pool_size"], fields["pool_free"] = p.Image, p.Device, localcopy.FormatSize(size), localcopy.FormatSize(free&^(1<<20-1))
		fields["pool_created"], fields["pool_attached"], fields["pool_mounted"] = p.Created, p.Attached, p.Mounted
	}
	log.WithFields(fields).Info("new volumes are btrfs subvolumes (point-in-time snapshots, size limits); directory volumes made before move into one at their next restore or with portvol convert")
	return c, nil
}

func openBtrfs(ctx context.Context, o serveOptions) (*btrfs.Copies, error) {
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: o.stateDir, PoolSize: o.poolSizeBytes})
	if err != nil {
		return nil, err
	}
	if err := c.Probe(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
