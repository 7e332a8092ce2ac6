package metrics

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portvol/portvol/transfer/meter"
)

// Build describes the running binary, for portvol_build_info.
type Build struct {
	Version, Revision, GoVersion string
}

// Metrics holds portvol's metrics in a registry of its own. Its methods
// are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	lastSuccess *prometheus.GaugeVec
	interval    *prometheus.GaugeVec
	failures    *prometheus.CounterVec
	leaseHeld   *prometheus.GaugeVec
	restore     *prometheus.GaugeVec
	reachable   prometheus.Gauge
	transferred *prometheus.CounterVec
	mounts      *prometheus.HistogramVec

	mu   sync.Mutex
	held map[string]bool // volumes whose lease this host holds

	lastAnswer atomic.Int64 // unix nanoseconds of the store's last answer or failure
}

// New returns the metrics of one portvol process. now is the clock (nil:
// time.Now).
func New(b Build, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		now: now,
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portvol_snapshot_last_success_timestamp_seconds",
			Help: "Unix time up to which this host's writes to the volume are in a published snapshot: its last publication, or when this host took the volume. Present while this host holds the volume.",
		}, []string{"volume"}),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portvol_snapshot_interval_seconds",
			Help: "The volume's snapshot_interval while it is mounted on this host (0: periodic snapshots off).",
		}, []string{"volume"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portvol_snapshot_failures_total",
			Help: "Failed periodic snapshots, and failed attempts of the final snapshot and release after the last unmount.",
		}, []string{"volume"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portvol_lease_held",
			Help: "1 while this host holds the volume's lease, else 0.",
		}, []string{"volume"}),
		restore: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portvol_restore_progress_ratio",
			Help: "Bytes written over bytes to write of the volume's running (or last) restore on this host.",
		}, []string{"volume"}),
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portvol_store_reachable",
			Help: "1 if the store answered portvol's last request, 0 if it failed (unreachable, timing out, refusing the credentials).",
		}),
		transferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portvol_transfer_bytes_total",
			Help: "Bytes sent to (up) and received from (down) the store.",
		}, []string{"direction"}),
		mounts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portvol_mount_duration_seconds",
			Help:    "Duration of Mount calls from dockerd, by result.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30},
		}, []string{"result"}),
		held: map[string]bool{},
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "portvol_build_info",
		Help:        "Always 1; the labels say which portvol runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	build.Set(1)
	m.reg.MustRegister(m.lastSuccess, m.interval, m.failures, m.leaseHeld, m.restore, m.reachable,
		m.transferred, m.mounts, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both directions and results exist from the start, so that rate()
	// and alerts see zeros rather than absent series.
	m.transferred.WithLabelValues("up")
	m.transferred.WithLabelValues("down")
	m.mounts.WithLabelValues("ok")
	m.mounts.WithLabelValues("error")
	return m
}

// MountDone implements driver.Observer.
func (m *Metrics) MountDone(_ string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.mounts.WithLabelValues(result).Observe(d.Seconds())
}

// LeaseHeld implements driver.Observer. Taking a volume starts its
// snapshot clock: the copy equals the head then.
func (m *Metrics) LeaseHeld(volume string, held bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if held {
		m.leaseHeld.WithLabelValues(volume).Set(1)
		if !m.held[volume] {
			m.held[volume] = true
			m.lastSuccess.WithLabelValues(volume).Set(unix(m.now()))
		}
		return
	}
	m.leaseHeld.WithLabelValues(volume).Set(0)
	delete(m.held, volume)
	m.lastSuccess.DeleteLabelValues(volume)
	m.interval.DeleteLabelValues(volume)
}

// SnapshotInterval implements driver.Observer.
func (m *Metrics) SnapshotInterval(volume string, interval time.Duration) {
	m.interval.WithLabelValues(volume).Set(interval.Seconds())
}

// SnapshotDone implements driver.Observer.
func (m *Metrics) SnapshotDone(volume string, err error) {
	if err != nil {
		m.failures.WithLabelValues(volume).Inc()
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[volume] {
		m.lastSuccess.WithLabelValues(volume).Set(unix(m.now()))
	}
}

// RestoreProgress implements driver.Observer.
func (m *Metrics) RestoreProgress(volume string, done, total uint64) {
	ratio := 0.0
	if total > 0 {
		ratio = min(1, float64(done)/float64(total))
	}
	m.restore.WithLabelValues(volume).Set(ratio)
}

// StoreReports returns the reports for the transfer/meter decorator of the
// store: bytes moved and whether the store answers.
func (m *Metrics) StoreReports() meter.Reports {
	up, down := m.transferred.WithLabelValues("up"), m.transferred.WithLabelValues("down")
	return meter.Reports{
		Sent:     func(n int64) { up.Add(float64(n)) },
		Received: func(n int64) { down.Add(float64(n)) },
		Answered: func(ok bool, _ error) { m.StoreAnswered(ok) },
	}
}

// StoreAnswered records whether the store answered a request (or could
// be opened at all).
func (m *Metrics) StoreAnswered(ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.reachable.Set(v)
	m.lastAnswer.Store(m.now().UnixNano())
}

// SinceStoreAnswered is how long ago the store last answered or failed a
// request; a prober asks the store itself when nothing else did lately.
func (m *Metrics) SinceStoreAnswered() time.Duration {
	last := m.lastAnswer.Load()
	if last == 0 {
		return time.Duration(1<<63 - 1)
	}
	return m.now().Sub(time.Unix(0, last))
}

// Handler serves /metrics and /healthz. healthy answers whether the
// process can serve dockerd (the handler gives it 2 s); its error is the
// body of a 503.
func (m *Metrics) Handler(healthy func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := healthy(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unhealthy: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
