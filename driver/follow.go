package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portvol/portvol/snapshot"
)

// DefaultFollowInterval is how often a follow reads the volume's head.
const DefaultFollowInterval = 2 * time.Second

// Follow keeps this host's copy of volume name within one snapshot of the
// store's head while another host owns it: it pulls (Pull: only what the
// copy lacks is fetched), reads the head again every interval and pulls
// each new snapshot, so that a planned move here waits only for the last
// delta. pulled is called after every pull that changed the copy,
// progress while one runs.
//
// It returns when ctx ends (the error is ctx's; a pull that is running
// goes on in the background, as Pull's does), with a nil error and Owned
// set once this host owns the volume (a Mount here: its copy is then the
// newest there is), and with the error when the volume cannot be followed
// (removed, a copy with unpublished changes, a wrong key). Store errors
// are reported through pulled's absence and retried every interval.
func (d *Driver) Follow(ctx context.Context, name string, interval time.Duration, pulled func(PullResult), progress func(snapshot.Progress), retrying func(error)) (PullResult, error) {
	if interval <= 0 {
		interval = DefaultFollowInterval
	}
	var last PullResult
	for {
		res, err := d.Pull(ctx, name, progress)
		switch {
		case ctx.Err() != nil:
			last.Message = fmt.Sprintf("stopped following volume %s at snapshot %s", name, dash(last.Snapshot))
			if err != nil && last.Snapshot == "" {
				last.Message = fmt.Sprintf("stopped following volume %s: %v", name, err)
			}
			return last, ctx.Err()
		case res.Owned:
			res.Message = fmt.Sprintf("this host owns volume %s now (its copy is the newest there is): following stopped", name)
			return res, nil
		case err != nil && !retryable(err):
			return last, err
		case err != nil:
			if retrying != nil {
				retrying(err)
			}
		case res.Snapshot != last.Snapshot || res.Fetched > 0:
			last = res
			if pulled != nil {
				pulled(res)
			}
		}
		if sleepCtx(ctx, interval) != nil {
			continue // reported at the top
		}
	}
}

// retryable: a follow waits and tries again after these (the store is
// unreachable, a transfer failed); every other kind of error means the
// volume cannot be followed as it is.
func retryable(err error) bool {
	var ke *kindError
	if errors.As(err, &ke) {
		return errors.Is(err, ErrUnavailable)
	}
	for _, e := range []error{snapshot.ErrKeyRequired, snapshot.ErrWrongKey, snapshot.ErrNotEncrypted, snapshot.ErrBadKey,
		snapshot.ErrUnsupportedVersion, snapshot.ErrPrivileged, ErrNotFound, ErrInvalid} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
