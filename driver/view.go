package driver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/portvol/portvol/catalog"
	"github.com/portvol/portvol/lease"
)

// Get and List are called constantly (dockerd asks before nearly every
// operation and for every volume at its start), so they read the store
// through a short cache, bound each read, and after a failure answer from
// this host's records for a while without trying.
const (
	viewTTL     = 3 * time.Second  // how long a read is trusted
	viewTimeout = 3 * time.Second  // bound on one read for Get and List
	viewBackoff = 10 * time.Second // after a failed read, no new attempt
)

// info is what the store says about one volume.
type info struct {
	Record  bool           // volumes/<name>/volume.json exists
	Vol     catalog.Volume // valid if Record
	Head    lease.Observation
	Removed bool // the head record is a removal tombstone
}

// Exists reports whether the volume exists: it has a record and was not
// removed.
func (i info) Exists() bool { return i.Record && !i.Removed }

// storeView caches reads of the store for Get, List and status.
type storeView struct {
	ttl       time.Duration
	mu        sync.Mutex
	vols      map[string]*viewEntry
	names     *viewEntry
	downUntil time.Time
	downAt    time.Time
	downErr   error
}

type viewEntry struct {
	done  chan struct{} // closed when the read finished
	at    time.Time
	info  info
	names []string
	err   error
}

// readInfo reads what the store says about name now (no cache) and
// refreshes the cache with it.
func (d *Driver) readInfo(ctx context.Context, b *Backend, name string) (info, error) {
	var in info
	var cerr, lerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.Head, lerr = b.Leases.Inspect(ctx, name)
	}()
	in.Vol, cerr = catalog.Get(ctx, b.Store, name)
	wg.Wait()
	switch {
	case cerr != nil && !errors.Is(cerr, catalog.ErrNotFound):
		return info{}, cerr
	case lerr != nil:
		return info{}, lerr
	}
	in.Record = cerr == nil
	in.Removed = in.Head.Exists && in.Head.Record.State == lease.Removed
	d.view.put(name, in)
	return in, nil
}

// cachedInfo is readInfo through the cache, bounded by viewTimeout.
func (d *Driver) cachedInfo(ctx context.Context, name string) (info, error) {
	b, err := d.storeNow()
	if err != nil {
		return info{}, err
	}
	e, err := d.view.entry(name, func(e *viewEntry) {
		ctx, cancel := context.WithTimeout(d.bg, viewTimeout)
		defer cancel()
		e.info, e.err = d.readInfo(ctx, b, name)
	})
	if err != nil {
		return info{}, err
	}
	return d.view.wait(ctx, e)
}

// cachedNames lists the volumes in the store through the cache.
func (d *Driver) cachedNames(ctx context.Context) ([]string, error) {
	b, err := d.storeNow()
	if err != nil {
		return nil, err
	}
	e, err := d.view.entry("", func(e *viewEntry) {
		ctx, cancel := context.WithTimeout(d.bg, viewTimeout)
		defer cancel()
		e.names, e.err = catalog.Names(ctx, b.Store)
	})
	if err != nil {
		return nil, err
	}
	if _, err := d.view.wait(ctx, e); err != nil {
		return nil, err
	}
	return e.names, nil
}

// entry returns a fresh or in-flight cache entry for name ("" is the list
// of names), starting read in the background if there is none.
func (v *storeView) entry(name string, read func(*viewEntry)) (*viewEntry, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Now().Before(v.downUntil) {
		// The failed read may have been of another volume: say so, and
		// when the store is tried again.
		return nil, errorf(ErrUnavailable, "store unreachable: a read %s ago failed (%s); the store is tried again in %s",
			time.Since(v.downAt).Round(time.Second), v.downErr, time.Until(v.downUntil).Round(time.Second))
	}
	e := v.names
	if name != "" {
		if v.vols == nil {
			v.vols = map[string]*viewEntry{}
		}
		e = v.vols[name]
	}
	if e != nil {
		select {
		case <-e.done:
			// "Does not exist" is never reused: a volume just created on
			// another host must be found by the Get that precedes a Create.
			if e.err == nil && time.Since(e.at) < v.ttl && (name == "" || e.info.Exists()) {
				return e, nil
			}
		default:
			return e, nil // being read
		}
	}
	e = &viewEntry{done: make(chan struct{})}
	if name == "" {
		v.names = e
	} else {
		v.vols[name] = e
	}
	go func() {
		read(e)
		v.mu.Lock()
		e.at = time.Now()
		if e.err != nil && !errors.Is(e.err, context.Canceled) {
			v.downAt, v.downUntil, v.downErr = time.Now(), time.Now().Add(viewBackoff), e.err
		} else if e.err == nil {
			v.downUntil, v.downErr = time.Time{}, nil
		}
		v.mu.Unlock()
		close(e.done)
	}()
	return e, nil
}

func (v *storeView) wait(ctx context.Context, e *viewEntry) (info, error) {
	select {
	case <-e.done:
	case <-ctx.Done():
		return info{}, ctx.Err()
	}
	if e.err != nil {
		return info{}, errorf(ErrUnavailable, "store unreachable: %s", e.err)
	}
	return e.info, nil
}

// put stores a fresh read.
func (v *storeView) put(name string, in info) {
	e := &viewEntry{done: make(chan struct{}), at: time.Now(), info: in}
	close(e.done)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.vols == nil {
		v.vols = map[string]*viewEntry{}
	}
	v.vols[name] = e
	v.downUntil = time.Time{}
}

// invalidate forgets what the cache knows of name and of the list of
// names, after this host changed them.
func (v *storeView) invalidate(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.vols, name)
	v.names = nil
}
