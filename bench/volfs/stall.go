package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stallResult is one pgbench run with per-transaction latencies.
type stallResult struct {
	Snapshots     bool
	TPS           float64
	Txns          int
	MaxMs, P999Ms float64
	Over50        int     // transactions slower than 50 ms
	OverlapMaxMs  float64 // slowest transaction overlapping a snapshot
	Freezes       int
	FreezeMedMs   float64 // Freeze (sync + read-only snapshot)
	FreezeMaxMs   float64
	KeepMaxMs     float64 // KeepBase (rename + delete the previous base)
}

func (s stallResult) String() string {
	return fmt.Sprintf("tps %.0f, %d txns, max %.1f ms, p99.9 %.1f ms, >50ms %d, max overlapping a snapshot %.1f ms, %d snapshots (freeze median %.1f ms, max %.1f ms; keep max %.1f ms)",
		s.TPS, s.Txns, s.MaxMs, s.P999Ms, s.Over50, s.OverlapMaxMs, s.Freezes, s.FreezeMedMs, s.FreezeMaxMs, s.KeepMaxMs)
}

type window struct{ from, to time.Time }

// stall runs pgbench with latency logs on target t, taking a snapshot
// every 2 s if snaps (Freeze, then KeepBase: the periodic snapshot's
// pattern, which keeps the last instant as the base).
func (e *env) stall(ctx context.Context, t target, snaps bool) (stallResult, error) {
	res := stallResult{Snapshots: snaps}
	d, cleanup, err := e.prepare(ctx, t)
	if err != nil {
		return res, err
	}
	defer cleanup()
	logDir := filepath.Join(e.pg.sock, "latency")
	_ = os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return res, err
	}
	if err := os.Chown(logDir, e.pg.uid, e.pg.gid); err != nil {
		return res, err
	}
	if err := e.pg.start(ctx, d, t.pgSet); err != nil {
		return res, err
	}
	defer e.pg.stop(context.Background(), d)
	type out struct {
		tps float64
		err error
	}
	done := make(chan out, 1)
	go func() {
		tps, err := e.pg.pgbench(ctx, e.c.clients, e.c.stallSeconds, filepath.Join(logDir, "lat"))
		done <- out{tps, err}
	}()
	var windows []window
	var freezes []float64
	name := "bench-" + t.key
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var o out
loop:
	for {
		select {
		case o = <-done:
			break loop
		case <-tick.C:
			if !snaps {
				continue
			}
			w := window{from: time.Now()}
			f, err := e.copies.Freeze(ctx, name)
			if err != nil {
				return res, err
			}
			fz := time.Now()
			if err := e.copies.KeepBase(ctx, f); err != nil {
				return res, err
			}
			w.to = time.Now()
			windows = append(windows, w)
			freezes = append(freezes, ms(fz.Sub(w.from)))
			res.KeepMaxMs = max(res.KeepMaxMs, ms(w.to.Sub(fz)))
		}
	}
	if o.err != nil {
		return res, o.err
	}
	res.TPS = o.tps
	lats, err := readLatencies(logDir, windows, &res)
	if err != nil {
		return res, err
	}
	sort.Float64s(lats)
	res.Txns = len(lats)
	if len(lats) > 0 {
		res.MaxMs = lats[len(lats)-1]
		res.P999Ms = lats[int(float64(len(lats)-1)*0.999)]
	}
	for _, l := range lats {
		if l > 50 {
			res.Over50++
		}
	}
	if len(freezes) > 0 {
		sort.Float64s(freezes)
		res.Freezes, res.FreezeMedMs, res.FreezeMaxMs = len(freezes), freezes[len(freezes)/2], freezes[len(freezes)-1]
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// readLatencies reads pgbench -l logs: client, transaction, latency µs,
// script, end time (s, µs).
func readLatencies(dir string, windows []window, res *stallResult) ([]float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "lat.*"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no pgbench latency logs in %s: %v", dir, err)
	}
	var lats []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 6 {
				continue
			}
			us, err1 := strconv.ParseInt(fs[2], 10, 64)
			sec, err2 := strconv.ParseInt(fs[4], 10, 64)
			usec, err3 := strconv.ParseInt(fs[5], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			l := float64(us) / 1000
			lats = append(lats, l)
			end := time.Unix(sec, usec*1000)
			start := end.Add(-time.Duration(us) * time.Microsecond)
			for _, w := range windows {
				if !start.After(w.to) && !end.Before(w.from) {
					res.OverlapMaxMs = max(res.OverlapMaxMs, l)
					break
				}
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return lats, nil
}
