package driver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/metadata"
)

// Status describes volume name, or every volume in the store and on this
// host if name is "", sorted by name.
func (d *Driver) Status(ctx context.Context, name string) ([]VolumeStatus, error) {
	var names []string
	if name != "" {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		names = []string{name}
	} else {
		vols, err := d.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range vols {
			names = append(names, v.Name)
		}
	}
	out := make([]VolumeStatus, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = d.statusOf(ctx, n)
		}()
	}
	wg.Wait()
	if name != "" && errs[0] != nil {
		return nil, errs[0]
	}
	var kept []VolumeStatus
	for i := range out {
		if errs[i] == nil {
			kept = append(kept, out[i])
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	return kept, nil
}

func (d *Driver) statusOf(ctx context.Context, name string) (VolumeStatus, error) {
	rec, err := d.db.Volume(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		return VolumeStatus{}, err
	}
	in, serr := d.cachedInfo(ctx, name)
	switch {
	case serr == nil && !in.Exists() && (!known || rec.Incarnation != ""):
		return VolumeStatus{}, errorf(ErrNotFound, "volume %q does not exist", name)
	case serr != nil && !known:
		return VolumeStatus{}, fmt.Errorf("volume %q: cannot tell whether it exists: %w", name, serr)
	case !known:
		rec = metadata.Volume{Name: name, Options: in.Vol.Options, CreatedAt: in.Vol.CreatedAt, CreatedBy: in.Vol.CreatedBy, Local: metadata.LocalAbsent}
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return VolumeStatus{}, err
	}
	var inp *info
	if serr == nil {
		inp = &in
	}
	return d.describe(rec, mounts, inp, serr), nil
}

// TakeoverResult is what a takeover did.
type TakeoverResult struct {
	Volume string `json:"volume"`
	// From is the host the lease was taken from, "" if nobody held it.
	From           string `json:"from,omitempty"`
	FromGeneration uint64 `json:"from_generation,omitempty"`
	Forced         bool   `json:"forced,omitempty"`
	// Generation is the generation taken (and released again).
	Generation uint64 `json:"generation"`
	// Head is the last published snapshot: what the next Mount restores.
	Head string `json:"head"`
	// Message says what happened and what was lost, for people.
	Message string `json:"message"`
}

// lockWithStore checks name, takes its volume lock and returns the store,
// for the admin operations; the caller unlocks.
func (d *Driver) lockWithStore(ctx context.Context, name string) (*Backend, func(), error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	unlock, err := d.locks.lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	b, err := d.store(ctx)
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("volume %q: %w", name, err)
	}
	return b, unlock, nil
}

// Takeover takes volume name over from a host that stopped renewing its
// lease: allowed once this host has watched the lease unchanged for a full
// TTL (it watches for up to a TTL and a bit if it has not yet; progress is
// called with what it sees), or at once with force. The generation goes
// up, so the old holder can never publish again; then the lease is
// released, so the next Mount anywhere acquires it normally and restores
// the last published snapshot.
func (d *Driver) Takeover(ctx context.Context, name string, force bool, progress func(string)) (TakeoverResult, error) {
	res := TakeoverResult{Volume: name}
	b, unlock, err := d.lockWithStore(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	if _, _, err := d.localRecord(ctx, b, name); err != nil {
		return res, err
	}
	mounts, err := d.db.Mounts(ctx, name)
	if err != nil {
		return res, err
	}
	v := d.state(name)
	if l := v.holding(); l != nil || mounts.Total() > 0 {
		return res, errorf(ErrInvalid, "volume %q is owned by this host (mounted %d time(s)): nothing to take over", name, mounts.Total())
	}
	if err := d.stopJob(ctx, v); err != nil {
		return res, err
	}
	o, err := b.Leases.Inspect(ctx, name)
	if err != nil {
		return res, errUnavailable(name, err)
	}
	wait := o.TTL + 2*time.Second
	if progress != nil && o.Exists && o.Record.State == lease.Held && !force {
		progress(fmt.Sprintf("host %s holds volume %s (generation %d); watching its lease for up to %s: a takeover needs it unchanged for %s", o.Record.Owner, name, o.Record.Generation, wait.Round(time.Second), o.TTL))
	}
	var said time.Time
	l, err := b.Leases.Takeover(ctx, name, lease.TakeoverOptions{Force: force, Wait: wait, Progress: func(h *lease.HeldError) {
		if progress != nil && time.Since(said) >= time.Second {
			said = time.Now()
			progress(fmt.Sprintf("lease of %s unchanged for %s of %s", h.Owner, h.Unchanged.Round(100*time.Millisecond), h.TTL))
		}
	}})
	if err != nil {
		return res, &kindError{kind: ErrBusy, cause: err, msg: err.Error()}
	}
	res.Generation, res.Head = l.Generation(), l.Head()
	note := ""
	if t := l.TookOver(); t != nil {
		res.From, res.FromGeneration, res.Forced = t.From, t.Generation, t.Forced
		res.Message = takeoverNote(t, l.Head())
		note = res.Message + " (" + time.Now().UTC().Format(time.RFC3339) + ")"
	}
	if err := d.update(ctx, name, func(r *metadata.Volume) {
		r.Generation = l.Generation()
		if note != "" {
			r.TakenOver = note
		}
	}); err != nil {
		return res, err
	}
	if note != "" {
		d.log.WithField("volume", name).WithField("from", res.From).Warn("takeover: " + res.Message)
	} else {
		res.Message = fmt.Sprintf("volume %s was not held by another host: nothing to take over", name)
	}
	if err := l.Release(ctx); err != nil {
		return res, fmt.Errorf("volume %q: taken over at generation %d, but releasing it failed (the next Mount here resumes it): %w", name, l.Generation(), err)
	}
	d.view.invalidate(name)
	return res, d.update(ctx, name, func(r *metadata.Volume) { r.Generation = 0 })
}
