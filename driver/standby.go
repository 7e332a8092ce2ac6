package driver

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/portvol/portvol/catalog"
)

// standbyScanEvery is how often a plugin looks for volumes that name it
// as a standby host (-o standby=HOST[,HOST]).
const standbyScanEvery = 30 * time.Second

type standbyTimes struct {
	scan, follow time.Duration
}

// followStandby runs for the plugin's life: every standby.scan it lists
// the store's volumes and, for each whose standby option names this host
// and that this host does not own, follows it (Follow: the copy is kept
// within one snapshot of the head). A follow ends when this host comes to
// own the volume, or the volume goes away or cannot be followed; the next
// scan starts it again once the volume still names this host and another
// host owns it. Errors are logged when they change.
func (d *Driver) followStandby(ctx context.Context) {
	type follower struct {
		cancel context.CancelFunc
	}
	running := map[string]follower{}
	type end struct {
		name string
		err  error // why the volume cannot be followed
	}
	ended := make(chan end)
	lastErr := map[string]string{}
	t := time.NewTicker(d.standby.scan)
	defer t.Stop()
	defer func() {
		for _, f := range running {
			f.cancel()
		}
		for range running {
			<-ended
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-ended:
			delete(running, e.name)
			if e.err != nil {
				if msg := e.err.Error(); lastErr[e.name] != msg {
					lastErr[e.name] = msg
					d.log.WithField("volume", e.name).WithError(e.err).Warn("standby: cannot follow this volume (the next scan tries again)")
				}
			} else {
				delete(lastErr, e.name)
			}
			continue
		case <-t.C:
		}
		b, err := d.storeNow()
		if err != nil {
			continue
		}
		names, err := catalog.Names(ctx, b.Store)
		if err != nil {
			d.log.WithError(err).Debug("standby: listing the store's volumes")
			continue
		}
		for _, name := range names {
			if _, ok := running[name]; ok || ctx.Err() != nil {
				continue
			}
			in, err := d.readInfo(ctx, b, name)
			if err != nil || !in.Exists() || !slices.Contains(strings.Split(in.Vol.Options[OptStandby], ","), d.hostID) {
				continue
			}
			if v := d.state(name); v.holding() != nil {
				continue // this host owns it
			}
			fctx, cancel := context.WithCancel(ctx)
			running[name] = follower{cancel: cancel}
			log := d.log.WithField("volume", name)
			go func() {
				defer cancel()
				res, err := d.Follow(fctx, name, d.standby.follow, func(r PullResult) {
					log.WithField("snapshot", r.Snapshot).WithField("fetched", r.Fetched).WithField("reused", r.Reused).Info("standby: pulled the head snapshot")
				}, nil, func(err error) {
					log.WithError(err).Debug("standby: cannot pull now")
				})
				if fctx.Err() != nil || res.Owned {
					err = nil
				}
				ended <- end{name, err}
			}()
		}
	}
}
