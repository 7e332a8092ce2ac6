package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portvol/portvol/snapshot"
)

type initOptions struct {
	snapFlags
	blockSize string
}

func newInitCmd(stdout io.Writer) *cobra.Command {
	var o initOptions
	c := &cobra.Command{
		Use:   "init --store URL [--encryption-key-file FILE] [--block-size SIZE]",
		Short: "Create a store (the only command that does)",
		Long: `Create a new portvol store at URL: the directory of a file:// store or the
bucket of an s3:// store (unless create_bucket=false), and the store's
configuration with a new store id. The store is encrypted if
--encryption-key-file is given, unencrypted otherwise; neither the key nor the
block size can be changed later.

No other command creates a store: import, export, snapshots, verify and a
plugin that has run before all refuse a store that is missing or empty, so a
mistyped --store, an unmounted file system or an emptied bucket is an error
instead of a new, empty store. (A plugin creates its store on its very first
start, with an empty state directory.) For an S3 store, init also proves that
the service honours conditional writes, as every writer does when it connects.

Running init on a store that exists with the same settings does nothing.`,
		Example: `  portvol init --store s3://backups/portvol
  head -c 32 /dev/urandom > /etc/portvol/key && chmod 600 /etc/portvol/key
  portvol init --store file:///mnt/nfs/portvol --encryption-key-file /etc/portvol/key --block-size 256KiB`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("init takes no arguments (got %q): give the store with --store URL", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), &o, stdout)
		},
	}
	f := c.Flags()
	o.snapFlags.register(f)
	f.StringVar(&o.blockSize, "block-size", "", "chunk size: a power of two from 64KiB to 8MiB (default 1MiB); fixed for the store's life")
	return c
}

// initResult is the JSON result of init. Field names are stable.
type initResult struct {
	Store     string `json:"store"`
	StoreID   string `json:"store_id"`
	Created   bool   `json:"created"`
	Encrypted bool   `json:"encrypted"`
	BlockSize int    `json:"block_size"`
}

func runInit(ctx context.Context, o *initOptions, stdout io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	bs, err := parseBlockSize(o.blockSize)
	if err != nil {
		return err
	}
	key, err := o.readKey()
	if err != nil {
		return err
	}
	s := &session{flags: &o.snapFlags, key: key}
	// Whether it existed is asked first, only to say what init did.
	existed := false
	if c, err := connect(ctx, o.store, connectOptions{repo: snapshot.Options{Key: key}}); err == nil {
		existed = true
		if bs != 0 && c.repo.BlockSize() != bs {
			return usageError{fmt.Errorf("store %s exists with blocks of %s; drop --block-size, or choose another store", o.where(), humanize.IBytes(uint64(c.repo.BlockSize())))}
		}
	}
	c, err := connect(ctx, o.store, connectOptions{
		create: true, write: true,
		init: snapshot.InitOptions{Key: key, BlockSize: bs},
		repo: snapshot.Options{Key: key},
	})
	if errors.Is(err, snapshot.ErrConfigMismatch) {
		return fmt.Errorf("%w: drop --block-size, or choose another store", err)
	}
	if err != nil {
		return s.repoError(err)
	}
	res := initResult{Store: o.where(), StoreID: c.id, Created: !existed, Encrypted: c.repo.Encrypted(), BlockSize: c.repo.BlockSize()}
	if o.json {
		return writeJSON(stdout, res)
	}
	what, enc := "created", "unencrypted"
	if existed {
		what = "exists already, with these settings"
	}
	if res.Encrypted {
		enc = "encrypted"
	}
	_, err = fmt.Fprintf(stdout, "store %s %s: store id %s, %s, blocks of %s\n", res.Store, what, res.StoreID, enc, humanize.IBytes(uint64(res.BlockSize)))
	return err
}

// parseBlockSize reads --block-size: a power of two from 64KiB to 8MiB,
// with an optional KiB or MiB suffix; "" is the default (0).
func parseBlockSize(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	num, mult := v, 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(num)
	bs := n * mult
	if err != nil || n <= 0 || bs < 64<<10 || bs > 8<<20 || bs&(bs-1) != 0 {
		return 0, usageError{fmt.Errorf("--block-size %q: want a power of two from 64KiB to 8MiB, e.g. 256KiB or 1MiB", v)}
	}
	return bs, nil
}
