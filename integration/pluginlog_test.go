package integration

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeline lists what the hosts' plugins logged about vol from t0 on, as
// offsets from t0 (the plugins run on this machine's clock): where a
// handoff's time goes.
func timeline(t0 time.Time, vol string, hosts ...*host) string {
	type entry struct {
		at   time.Duration
		line string
	}
	var entries []entry
	for _, h := range hosts {
		for _, e := range h.pluginEvents("", vol) {
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["time"]))
			if err != nil || at.Before(t0) || e["msg"] == "call done" {
				continue
			}
			line := fmt.Sprintf("%s: %v", h.name, e["msg"])
			if ph, ok := e["phases"].(string); ok {
				line += " (" + ph + ")"
			}
			entries = append(entries, entry{at.Sub(t0), line})
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.at, b.at) })
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "+%5.2f s  %s\n", e.at.Seconds(), e.line)
	}
	return b.String()
}

// pluginEvents returns the plugin's log entries with message msg ("":
// any) about volume vol, oldest first (the plugin logs JSON, which dockerd quotes
// into its own log lines as msg="...").
func (h *host) pluginEvents(msg, vol string) []map[string]any {
	var events []map[string]any
	for _, line := range strings.Split(h.pluginLog(), "\n") {
		i := strings.Index(line, `msg="{`)
		j := strings.LastIndex(line, `}" plugin=`)
		if i < 0 || j < i {
			continue
		}
		raw, err := strconv.Unquote(line[i+len("msg=") : j+2])
		if err != nil {
			continue
		}
		var e map[string]any
		if json.Unmarshal([]byte(raw), &e) == nil && (msg == "" || e["msg"] == msg) && e["volume"] == vol {
			events = append(events, e)
		}
	}
	return events
}

// number is a JSON number from a log entry (0 if absent).
func number(v any) float64 {
	f, _ := v.(float64)
	return f
}
