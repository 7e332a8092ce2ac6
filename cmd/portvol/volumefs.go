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

// prepareVolumeFS logs the volume filesystem and, when btrfs was asked
// for explicitly, prepares it at start: the pool is made, attached and
// mounted (or found so), and a subvolume is created, snapshotted and
// deleted, so a host (or managed plugin) that cannot do it fails at start
// with the reason. The driver does not keep volumes in it yet.
func prepareVolumeFS(ctx context.Context, o serveOptions, log logrus.FieldLogger) error {
	fs, why, err := resolveVolumeFS(o.volumeFS)
	if err != nil {
		return err
	}
	log = log.WithField("volume_fs", fs).WithField("reason", why)
	if o.volumeFS != localcopy.FilesystemBtrfs {
		log.Info("volume filesystem chosen; volumes are kept in directories until the driver adopts subvolumes")
		return nil
	}
	c, err := btrfs.Open(ctx, btrfs.Options{StateDir: o.stateDir, PoolSize: o.poolSizeBytes})
	if err != nil {
		return fmt.Errorf("--volume-fs btrfs: %w", err)
	}
	if err := c.Probe(ctx); err != nil {
		return fmt.Errorf("--volume-fs btrfs: %w", err)
	}
	fields := logrus.Fields{"root": c.Root()}
	if p := c.Pool(); p != nil {
		size, free, err := p.Space()
		if err != nil {
			return fmt.Errorf("--volume-fs btrfs: %w", err)
		}
		fields["pool_image"], fields["pool_device"], fields["pool_size"], fields["pool_free"] = p.Image, p.Device, localcopy.FormatSize(size), localcopy.FormatSize(free&^(1<<20-1))
		fields["pool_created"], fields["pool_attached"], fields["pool_mounted"] = p.Created, p.Attached, p.Mounted
	}
	log.WithFields(fields).Info("btrfs volume filesystem ready (subvolume create, snapshot and delete checked); volumes are kept in directories until the driver adopts subvolumes")
	return nil
}
