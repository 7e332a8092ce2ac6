package prune

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/portvol/portvol/snapshot"
	"github.com/portvol/portvol/transfer"
)

// DefaultMargin is how old an unreferenced pack must be before it is
// marked, and how long a collection record waits before its sweep.
const DefaultMargin = time.Hour

// Options tune Run. Zero values mean defaults, except Margin (see ZeroMargin).
type Options struct {
	// Margin: DefaultMargin if 0 and ZeroMargin is false (doc.go).
	Margin time.Duration
	// ZeroMargin makes a Margin of 0 mean zero: every unreferenced pack is
	// marked and every record is swept at once. Safe only while no writer
	// is active.
	ZeroMargin bool
	// DryRun reports what a run would mark and sweep, changing nothing.
	DryRun bool
	// Host is written into collection records, for people.
	Host string
	// Workers is the number of manifests read at once (default 8).
	Workers int
	// Now is the wall clock for record IDs (default time.Now); ages are
	// judged by the store's clock, never by it.
	Now func() time.Time
	// Progress, if set, is called as the run goes.
	Progress func(Progress)
}

// Progress reports a running prune.
type Progress struct {
	Phase     string // "sweep-scan", "sweep", "scan", "mark"
	Manifests int    // manifests read in the current scan
	Done      int    // packs handled in the current phase
}

// Result is what a run did (or would do, in a dry run).
type Result struct {
	Margin    time.Duration
	StoreTime time.Time
	DryRun    bool

	Manifests      int   // manifests scanned (the last scan)
	Packs          int   // packs in the store before the run
	PackBytes      int64 // their size
	Referenced     int   // packs some manifest references
	Unreferenced   int   // packs no manifest references (any age)
	UnrefBytes     int64
	Marked         int   // packs listed in the new collection record
	MarkedBytes    int64 //
	Record         string
	Swept          int   // collection records swept
	Waiting        int   // records not yet a margin old
	Deleted        int   // packs deleted
	DeletedBytes   int64 //
	Revived        int   // listed packs found referenced again
	IndexesDeleted int
	Problems       []string // undecodable records, skipped
}

// Run is one prune: sweep the collection records that are a margin old,
// then mark the packs no snapshot references (doc.go). Run it twice with
// ZeroMargin and no writer active to reclaim everything unreferenced.
func Run(ctx context.Context, repo *snapshot.Repo, store transfer.ObjectStore, o Options) (Result, error) {
	if o.Margin == 0 && !o.ZeroMargin {
		o.Margin = DefaultMargin
	}
	if o.Margin < 0 {
		return Result{}, fmt.Errorf("margin %s: must not be negative", o.Margin)
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	res := Result{Margin: o.Margin, DryRun: o.DryRun}
	report := func(p Progress) {
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	now, err := storeNow(ctx, store)
	if err != nil {
		return res, err
	}
	res.StoreTime = now
	recs, bad, err := pending(ctx, store)
	if err != nil {
		return res, err
	}
	for _, b := range bad {
		res.Problems = append(res.Problems, b.Error())
	}

	// Step two for every ripe record.
	var ripe []*collection
	for _, c := range recs {
		if c.modTime.IsZero() {
			res.Problems = append(res.Problems, fmt.Sprintf("%s: the store gives it no modification time; not swept", collectionKey(c.ID)))
			continue
		}
		if now.Sub(c.modTime) >= o.Margin {
			ripe = append(ripe, c)
		} else {
			res.Waiting++
		}
	}
	var refs *refSet
	if len(ripe) > 0 {
		refs, err = scanRefs(ctx, repo, store, o.Workers, func(n int) { report(Progress{Phase: "sweep-scan", Manifests: n}) })
		if err != nil {
			return res, err
		}
		for _, c := range ripe {
			if err := sweep(ctx, store, c, refs, &res, o.DryRun, o.Workers, report); err != nil {
				return res, err
			}
		}
	}

	// Step one. The references just scanned serve (safety rests on the
	// sweep's own scan, not this one); otherwise scan now.
	if refs == nil {
		refs, err = scanRefs(ctx, repo, store, o.Workers, func(n int) { report(Progress{Phase: "scan", Manifests: n}) })
		if err != nil {
			return res, err
		}
	}
	res.Manifests = refs.manifests
	if err := mark(ctx, store, refs, now, o, &res, report); err != nil {
		return res, err
	}
	return res, nil
}

// sweep is step two of record c.
func sweep(ctx context.Context, store transfer.ObjectStore, c *collection, refs *refSet, res *Result, dry bool, workers int, report func(Progress)) error {
	dead := make(map[string]bool, len(c.Packs))
	for _, p := range c.Packs {
		if refs.has(p) {
			res.Revived++
			continue
		}
		dead[p] = true
	}
	// Indexes first: a reader finding an index whose pack is gone only
	// uploads again, but an index left behind would outlive its record.
	for _, ix := range c.Indexes {
		if !dead[snapshot.Classify(ix).Pack] {
			continue
		}
		res.IndexesDeleted++
		if !dry {
			if err := store.Delete(ctx, ix); err != nil {
				return fmt.Errorf("sweeping %s: deleting %s: %w", collectionKey(c.ID), ix, err)
			}
		}
	}
	var dead2 []string
	for _, p := range c.Packs {
		if dead[p] {
			dead2 = append(dead2, p)
		}
	}
	if dry {
		res.Deleted += len(dead2)
	} else {
		n, bytes, err := deletePacks(ctx, store, dead2, workers, func(done int) { report(Progress{Phase: "sweep", Done: done}) })
		res.Deleted += n
		res.DeletedBytes += bytes
		if err != nil {
			return fmt.Errorf("sweeping %s: %w", collectionKey(c.ID), err)
		}
	}
	res.Swept++
	if dry {
		return nil
	}
	if err := store.Delete(ctx, collectionKey(c.ID)); err != nil {
		return fmt.Errorf("sweeping %s: deleting the record: %w", collectionKey(c.ID), err)
	}
	return nil
}

// mark is step one: list packs and indexes against refs, write the record
// of the candidates, delete indexes that protect nothing.
func mark(ctx context.Context, store transfer.ObjectStore, refs *refSet, now time.Time, o Options, res *Result, report func(Progress)) error {
	cutoff := now.Add(-o.Margin)
	exists := map[string]struct{}{}
	cand := map[string]struct{}{}
	c := &collection{ID: newRecordID(o.Now()), Host: o.Host, Created: o.Now().UTC()}
	err := snapshot.Objects(ctx, store, snapshot.KindPack, func(p snapshot.Object) error {
		exists[p.Pack] = struct{}{}
		res.Packs++
		res.PackBytes += p.Size
		if refs.has(p.Pack) {
			res.Referenced++
			return nil
		}
		res.Unreferenced++
		res.UnrefBytes += p.Size
		if p.ModTime.After(cutoff) {
			return nil // may be a Create's still uploading or about to resume
		}
		cand[p.Pack] = struct{}{}
		c.Packs = append(c.Packs, p.Pack)
		c.Bytes += p.Size
		report(Progress{Phase: "mark", Done: len(c.Packs)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing packs: %w", err)
	}
	var stale []string
	err = snapshot.Objects(ctx, store, snapshot.KindIndex, func(ix snapshot.Object) error {
		_, candidate := cand[ix.Pack]
		_, present := exists[ix.Pack]
		old := !ix.ModTime.After(cutoff)
		switch {
		case candidate:
			c.Indexes = append(c.Indexes, ix.Key)
		case old && !present:
			stale = append(stale, ix.Key) // its pack is gone
		case old && ix.Snapshot != "initial" && !refs.prefixed(ix.Key):
			stale = append(stale, ix.Key) // its parent snapshot is gone
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing pack indexes: %w", err)
	}
	res.Marked, res.MarkedBytes = len(c.Packs), c.Bytes
	res.IndexesDeleted += len(stale)
	if o.DryRun {
		return nil
	}
	for _, k := range stale {
		if err := store.Delete(ctx, k); err != nil {
			return fmt.Errorf("deleting stale pack index %s: %w", k, err)
		}
	}
	if err := deleteOldProbes(ctx, store, cutoff); err != nil {
		return err
	}
	if len(c.Packs) == 0 {
		return nil
	}
	data, err := encodeCollection(c)
	if err != nil {
		return err
	}
	if _, err := store.PutIfAbsent(ctx, collectionKey(c.ID), data); err != nil {
		return fmt.Errorf("writing collection record %s: %w", collectionKey(c.ID), err)
	}
	res.Record = collectionKey(c.ID)
	return nil
}

// deleteOldProbes removes store-clock probes that killed runs left.
func deleteOldProbes(ctx context.Context, store transfer.ObjectStore, cutoff time.Time) error {
	var old []string
	err := store.List(ctx, clockPrefix, func(oi transfer.ObjectInfo) error {
		if oi.ModTime.Before(cutoff.Add(-time.Minute)) && !strings.Contains(strings.TrimPrefix(oi.Key, clockPrefix), "/") {
			old = append(old, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing store clock probes: %w", err)
	}
	for _, k := range old {
		if err := store.Delete(ctx, k); err != nil {
			return fmt.Errorf("deleting store clock probe %s: %w", k, err)
		}
	}
	return nil
}

// deletePacks deletes packs, workers at a time, and returns how many it
// deleted and their size (packs already gone count for nothing).
func deletePacks(ctx context.Context, store transfer.ObjectStore, packs []string, workers int, progress func(int)) (int, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		n     int
		bytes int64
		first error
		wg    sync.WaitGroup
	)
	jobs := make(chan string)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				oi, err := store.Stat(ctx, p)
				if errors.Is(err, transfer.ErrNotExist) {
					continue // deleted by an earlier or concurrent sweep
				}
				if err == nil {
					err = store.Delete(ctx, p)
				}
				mu.Lock()
				if err != nil {
					if first == nil {
						first = fmt.Errorf("deleting %s: %w", p, err)
						cancel()
					}
				} else {
					n++
					bytes += oi.Size
					progress(n)
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range packs {
		select {
		case jobs <- p:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return n, bytes, first
}
