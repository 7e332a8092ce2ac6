package driver

import (
	"context"

	"github.com/portvol/portvol/prune"
)

// retain applies volume name's retention policy (its keep_* options, or
// prune.DefaultPolicy) after this host, the holder, published head. A
// failure costs only space until the next publish, so it is logged, not
// returned: the publish itself succeeded.
func (d *Driver) retain(ctx context.Context, b *Backend, name string, opts map[string]string, head string) {
	log := d.log.WithField("volume", name)
	p, has, err := prune.ParseOptions(opts)
	if err != nil {
		log.WithError(err).Warn("retention policy not applied")
		return
	}
	if !has {
		p = prune.DefaultPolicy
	}
	res, err := prune.Forget(ctx, b.Snapshots, b.Store, name, p, prune.ForgetOptions{Head: head})
	if err != nil {
		if ctx.Err() == nil {
			log.WithError(err).Warn("applying the retention policy failed; retrying after the next publish")
		}
		return
	}
	if res.Forgotten > 0 {
		log.WithField("forgotten", res.Forgotten).WithField("kept", len(res.Decisions)-res.Forgotten).
			WithField("policy", p.String()).Info("snapshots forgotten by the retention policy")
	}
}
