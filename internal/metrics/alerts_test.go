package metrics_test

import (
	"bytes"
	"os"
	"regexp"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portvol/portvol/internal/metrics"
)

// TestAlertRules checks contrib/prometheus/alerts.yml against the metrics
// portvol exports: the file is a Prometheus rule file, and every portvol_
// series an alert reads exists, so that a renamed metric cannot leave an
// alert that silently never fires.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("../../contrib/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	m := metrics.New(metrics.Build{}, nil)
	m.LeaseHeld("v", true) // per-volume series exist once a volume is held
	m.SnapshotInterval("v", time.Minute)
	m.SnapshotDone("v", os.ErrClosed)
	m.RestoreProgress("v", 1, 2)
	exported := scrape(t, m.Handler(nil))
	name := regexp.MustCompile(`\bportvol_[a-z_]+\b`)
	alerts := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: needs a summary and a severity", r.Alert)
			}
			used := name.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("%s reads no portvol metric: %s", r.Alert, r.Expr)
			}
			for _, n := range used {
				if exported[n] == nil {
					t.Errorf("%s reads %s, which portvol does not export", r.Alert, n)
				}
			}
		}
	}
	for _, want := range []string{"PortvolSnapshotsStale", "PortvolStoreUnreachable"} {
		if !alerts[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}
