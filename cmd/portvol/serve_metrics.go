package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/portvol/portvol/internal/metrics"
	"github.com/portvol/portvol/transfer"
)

// Probing the store when nothing else asked it lately keeps
// portvol_store_reachable current on an idle host.
const (
	probeQuiet   = 30 * time.Second // no answer for this long: probe
	probeEvery   = 10 * time.Second
	probeTimeout = 10 * time.Second
	// probeKey is the snapshot configuration object, which every store in
	// use has; a missing object is an answer too.
	probeKey = "config"
)

// buildInfo describes this binary for portvol_build_info.
func buildInfo() metrics.Build {
	v := currentVersion()
	return metrics.Build{Version: v.Version, Revision: v.Revision, GoVersion: runtime.Version()}
}

// serveMetrics serves /metrics and /healthz on addr until ctx ends. A
// port it cannot listen on is logged, not fatal: the volumes matter more
// than their metrics, and a second portvol on the host (another plugin
// name) must still start.
func serveMetrics(ctx context.Context, addr string, m *metrics.Metrics, healthy func(context.Context) error, log logrus.FieldLogger) {
	if addr == "" {
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.WithError(err).WithField("metrics_addr", addr).Error("cannot serve metrics (is another portvol using this address? set --metrics-addr or PORTVOL_METRICS_ADDR); volumes are served regardless")
		return
	}
	srv := &http.Server{Handler: m.Handler(healthy), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.WithError(err).Debug("metrics server shutdown")
		}
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped")
		}
	}()
	log.WithField("metrics_addr", l.Addr().String()).Info("serving metrics on /metrics and health on /healthz")
}

// probeStore asks the store for probeKey whenever it has not answered for
// probeQuiet, until ctx ends; the meter under st records the outcome.
func probeStore(ctx context.Context, st *atomic.Pointer[transfer.ObjectStore], m *metrics.Metrics) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p := st.Load()
		if p == nil || m.SinceStoreAnswered() < probeQuiet {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		// The meter under the store records the answer (or the failure,
		// a timeout included); the error itself adds nothing here.
		_, _ = (*p).Stat(pctx, probeKey)
		cancel()
	}
}
