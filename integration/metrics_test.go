package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// obsPlugin is a managed plugin of this run's own, on an S3 store behind a
// relay that the test can turn into an S3 service refusing every request,
// with its metrics on a port of its own.
type obsPlugin struct {
	name    string
	metrics string // http://127.0.0.1:PORT
	relay   *relay
	state   string
	id      string // the plugin's id (its log lines carry it)
}

// installObsPlugin installs the plugin built by make plugin-rootfs as
// name, as the README says (settings with docker plugin set), with the
// lease TTL at 3 s so that renewals, which reach the store every second,
// keep portvol_store_reachable current.
func installObsPlugin(t *testing.T, name string) *obsPlugin {
	t.Helper()
	ctx := context.Background()
	if out, err := run(ctx, "", "make", "-C", repoRoot, "plugin-rootfs"); err != nil {
		t.Fatalf("make plugin-rootfs: %v\n%s", err, out)
	}
	if err := mainEngine.buildImage(ctx); err != nil {
		t.Fatal(err)
	}
	s3 := startS3Server(t, "127.0.0.1")
	p := &obsPlugin{name: name, relay: startRelay(t, "127.0.0.1", s3.Addr())}
	dir, err := os.MkdirTemp(diskTempDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	p.state = dir
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin log (tail):\n%s", tail((&host{pluginID: p.id, eng: mainEngine}).pluginLog(), 6000))
		}
		out, _ := mainEngine.cli("volume", "ls", "-q", "--filter", "driver="+name+":latest")
		for _, v := range strings.Fields(out) {
			mainEngine.cli("volume", "rm", "-f", v)
		}
		mainEngine.cli("plugin", "disable", "-f", name)
		mainEngine.cli("plugin", "rm", "-f", name)
		os.RemoveAll(dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "s3-credentials"), []byte(s3.credentialsFile()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	p.metrics = "http://" + addr
	docker(t, "plugin", "create", name, filepath.Join(repoRoot, "build", "plugin"))
	docker(t, "plugin", "set", name, "state.source="+dir,
		"PORTVOL_STORE="+s3.storeURL("obs-"+runID, p.relay.Addr),
		"AWS_SHARED_CREDENTIALS_FILE=/var/lib/portvol/s3-credentials",
		"PORTVOL_HOST_ID=obs-"+runID, "PORTVOL_LEASE_TTL=3s", "PORTVOL_METRICS_ADDR="+addr)
	docker(t, "plugin", "enable", name)
	p.id = docker(t, "plugin", "inspect", "-f", "{{.Id}}", name)
	return p
}

// freePort returns a 127.0.0.1 address no one listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape is what Prometheus does: GET /metrics and parse it.
func (p *obsPlugin) scrape(t *testing.T) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err) // a format error never heals
	}
	return fams, nil
}

// sample is the value of the series of name whose labels include the
// given "key=value" pairs (a histogram's sample count); ok false if absent.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
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
			k, want, _ := strings.Cut(kv, "=")
			if have[k] != want {
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

// waitMetrics scrapes until cond holds for the metrics (up to a minute),
// and returns them.
func (p *obsPlugin) waitMetrics(t *testing.T, what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	var err error
	waitFor(t, time.Minute, what, func() bool {
		fams, err = p.scrape(t)
		return err == nil && cond(fams)
	})
	return fams
}

// TestMetrics scrapes a managed plugin's /metrics while a volume is
// mounted, snapshotted every second, and then failing because the store
// refuses every request; and /healthz throughout.
func TestMetrics(t *testing.T) {
	requireDocker(t)
	start := time.Now()
	p := installObsPlugin(t, "portvol-obs-"+runID)
	t.Logf("plugin installed after %v", time.Since(start).Round(time.Millisecond))
	vol := mainEngine.volume(t, p.name, "obs", "-o", "snapshot_interval=1s")
	acquired := float64(time.Now().Unix())
	c := mainEngine.container(t, vol)
	// Cleanups run last-in first-out: let the store answer again before
	// the container and the volume go.
	t.Cleanup(func() { p.relay.setDeny(false) })
	docker(t, "exec", c, "sh", "-c", "head -c 2000000 /dev/urandom > /data/f")

	var first float64
	fams := p.waitMetrics(t, "the mounted volume's metrics, with a periodic snapshot published", func(f map[string]*dto.MetricFamily) bool {
		held, _ := sample(f, "portvol_lease_held", "volume="+vol)
		last, ok := sample(f, "portvol_snapshot_last_success_timestamp_seconds", "volume="+vol)
		up, _ := sample(f, "portvol_transfer_bytes_total", "direction=up")
		if first == 0 && ok {
			first = last // set when the host took the volume
		}
		return held == 1 && last > first && up >= 2_000_000
	})
	t.Logf("healthy metrics after %v", time.Since(start).Round(time.Millisecond))
	if first < acquired-1 {
		t.Errorf("the snapshot clock started at %v, before the volume was taken (%v)", first, acquired)
	}
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"portvol_store_reachable", nil, func(v float64) bool { return v == 1 }, "1"},
		{"portvol_mount_duration_seconds", []string{"result=ok"}, func(v float64) bool { return v >= 1 }, "at least one Mount"},
		{"portvol_snapshot_interval_seconds", []string{"volume=" + vol}, func(v float64) bool { return v == 1 }, "1"},
		{"portvol_snapshot_failures_total", []string{"volume=" + vol}, func(v float64) bool { return v == 0 }, "0 (or absent)"},
		{"portvol_build_info", nil, func(v float64) bool { return v == 1 }, "1"},
	} {
		v, _ := sample(fams, c.name, c.labels...)
		if !c.ok(v) {
			t.Errorf("%s%v = %v while healthy, want %s", c.name, c.labels, v, c.want)
		}
	}
	health := func() (int, string) {
		resp, err := http.Get(p.metrics + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := health(); code != 200 || body != "ok\n" {
		t.Errorf("/healthz while healthy: %d %q", code, body)
	}

	// The store refuses everything: snapshots fail, the store is
	// unreachable, and the last success stays where it was.
	p.relay.setDeny(true)
	fams = p.waitMetrics(t, "failed snapshots and an unreachable store", func(f map[string]*dto.MetricFamily) bool {
		failed, _ := sample(f, "portvol_snapshot_failures_total", "volume="+vol)
		reach, _ := sample(f, "portvol_store_reachable")
		return failed >= 2 && reach == 0
	})
	t.Logf("failing metrics after %v", time.Since(start).Round(time.Millisecond))
	stuck, _ := sample(fams, "portvol_snapshot_last_success_timestamp_seconds", "volume="+vol)
	time.Sleep(2 * time.Second) // two more intervals, both failing
	fams = p.waitMetrics(t, "metrics", func(map[string]*dto.MetricFamily) bool { return true })
	if last, _ := sample(fams, "portvol_snapshot_last_success_timestamp_seconds", "volume="+vol); last != stuck {
		t.Errorf("last success moved from %v to %v while the store refused every request", stuck, last)
	}
	if held, _ := sample(fams, "portvol_lease_held", "volume="+vol); held != 1 {
		t.Errorf("lease held %v while mounted, want 1: the host keeps its lease through a store outage", held)
	}
	if code, body := health(); code != 200 {
		t.Errorf("/healthz during a store outage: %d %q; the plugin still serves dockerd", code, body)
	}

	// The store is back: reachable again, and snapshots publish again.
	p.relay.setDeny(false)
	p.waitMetrics(t, "the store reachable and snapshots published again", func(f map[string]*dto.MetricFamily) bool {
		reach, _ := sample(f, "portvol_store_reachable")
		last, _ := sample(f, "portvol_snapshot_last_success_timestamp_seconds", "volume="+vol)
		return reach == 1 && last > stuck
	})
}
