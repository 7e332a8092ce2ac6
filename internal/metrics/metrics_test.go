package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portvol/portvol/internal/metrics"
)

// scrape fetches /metrics from h and parses it as Prometheus does.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value is the value of the series of family name whose labels include
// labels ("k=v" pairs); ok false if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	m := metrics.New(metrics.Build{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26"}, clock)
	h := m.Handler(func(context.Context) error { return nil })

	f := scrape(t, h)
	if v, ok := value(f, "portvol_build_info", "version=v1.2.3", "revision=abc"); !ok || v != 1 {
		t.Errorf("build info: %v %v", v, ok)
	}
	for _, dir := range []string{"up", "down"} {
		if v, ok := value(f, "portvol_transfer_bytes_total", "direction="+dir); !ok || v != 0 {
			t.Errorf("transfer %s before any transfer: %v %v, want a zero series", dir, v, ok)
		}
	}
	if _, ok := value(f, "portvol_snapshot_last_success_timestamp_seconds", "volume=pg"); ok {
		t.Error("a snapshot time for a volume this host never held")
	}

	// The host takes pg: its snapshot clock starts now.
	m.LeaseHeld("pg", true)
	m.SnapshotInterval("pg", 5*time.Minute)
	m.MountDone("pg", 1500*time.Millisecond, nil)
	m.MountDone("pg", 20*time.Second, errors.New("held by hostB"))
	m.RestoreProgress("pg", 0, 0)
	m.RestoreProgress("pg", 3<<20, 4<<20)
	r := m.StoreReports()
	r.Sent(1000)
	r.Received(300)
	r.Answered(true, nil)
	f = scrape(t, h)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"portvol_lease_held", []string{"volume=pg"}, 1},
		{"portvol_snapshot_last_success_timestamp_seconds", []string{"volume=pg"}, 1_800_000_000},
		{"portvol_snapshot_interval_seconds", []string{"volume=pg"}, 300},
		{"portvol_restore_progress_ratio", []string{"volume=pg"}, 0.75},
		{"portvol_mount_duration_seconds", []string{"result=ok"}, 1},
		{"portvol_mount_duration_seconds", []string{"result=error"}, 1},
		{"portvol_transfer_bytes_total", []string{"direction=up"}, 1000},
		{"portvol_transfer_bytes_total", []string{"direction=down"}, 300},
		{"portvol_store_reachable", nil, 1},
	} {
		if v, ok := value(f, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}

	// A snapshot publishes later; then one fails and the store goes away.
	now = now.Add(5 * time.Minute)
	m.SnapshotDone("pg", nil)
	now = now.Add(5 * time.Minute)
	m.SnapshotDone("pg", errors.New("S3 AccessDenied"))
	r.Answered(false, errors.New("S3 AccessDenied"))
	f = scrape(t, h)
	if v, _ := value(f, "portvol_snapshot_last_success_timestamp_seconds", "volume=pg"); v != 1_800_000_300 {
		t.Errorf("last success %v, want the publication at 1800000300", v)
	}
	if v, _ := value(f, "portvol_snapshot_failures_total", "volume=pg"); v != 1 {
		t.Errorf("failures %v, want 1", v)
	}
	if v, _ := value(f, "portvol_store_reachable"); v != 0 {
		t.Errorf("store reachable %v after a failed request, want 0", v)
	}
	if d := m.SinceStoreAnswered(); d != 0 {
		t.Errorf("SinceStoreAnswered %v right after an answer", d)
	}

	// The host lets pg go: its snapshot series go, the lease shows 0.
	m.LeaseHeld("pg", false)
	f = scrape(t, h)
	if v, ok := value(f, "portvol_lease_held", "volume=pg"); !ok || v != 0 {
		t.Errorf("lease held after release: %v %v, want 0", v, ok)
	}
	for _, name := range []string{"portvol_snapshot_last_success_timestamp_seconds", "portvol_snapshot_interval_seconds"} {
		if _, ok := value(f, name, "volume=pg"); ok {
			t.Errorf("%s still present for a volume this host let go", name)
		}
	}
	if v, _ := value(f, "portvol_snapshot_failures_total", "volume=pg"); v != 1 {
		t.Errorf("failures counter %v after release, want it kept at 1", v)
	}
	// A publication reported after the release does not bring it back.
	m.SnapshotDone("pg", nil)
	if _, ok := value(scrape(t, h), "portvol_snapshot_last_success_timestamp_seconds", "volume=pg"); ok {
		t.Error("a snapshot time for a volume this host no longer holds")
	}
}

func TestHealthz(t *testing.T) {
	m := metrics.New(metrics.Build{}, nil)
	var broken error
	h := m.Handler(func(context.Context) error { return broken })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("healthy: %d %q", code, body)
	}
	broken = errors.New("state database: timeout")
	if code, body := get(); code != 503 || !strings.Contains(body, "state database: timeout") {
		t.Errorf("unhealthy: %d %q", code, body)
	}
}
