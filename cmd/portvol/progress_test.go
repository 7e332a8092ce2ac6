package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portvol/portvol/snapshot"
)

// fakeClock drives a reporter's time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testReporter(style progressStyle) (*reporter, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	c := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := &reporter{w: &buf, style: style, op: "import", volume: "pg", now: c.now}
	r.start = c.now()
	return r, &buf, c
}

// feed reports an upload of 100 MiB at 10 MiB/s, four times a second.
func feed(r *reporter, c *fakeClock, seconds int) {
	r.update(snapshot.Progress{Phase: "scan"})
	for i := 1; i <= seconds*4; i++ {
		c.t = c.t.Add(250 * time.Millisecond)
		r.update(snapshot.Progress{Phase: "upload", Files: 3, Bytes: 100 << 20, TotalKnown: true, BytesDone: uint64(i) * (10 << 20) / 4, Transferred: uint64(i) << 20})
	}
	r.update(snapshot.Progress{Phase: "finish", Files: 3, Bytes: 100 << 20, TotalKnown: true, BytesDone: 100 << 20, Transferred: 40 << 20})
	r.done()
}

func TestProgressPlain(t *testing.T) {
	r, buf, c := testReporter(progressPlain)
	feed(r, c, 10)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	// A line every 5 s of a 10 s run, nothing at the end (the result
	// goes to stdout).
	if len(lines) != 2 {
		t.Fatalf("plain progress printed %d lines, want 2:\n%s", len(lines), buf)
	}
	want := "import pg: upload  50% 50 MiB of 100 MiB, 10 MiB/s, ETA 5s"
	if lines[0] != want {
		t.Errorf("line %q\nwant %q", lines[0], want)
	}
	if strings.Contains(buf.String(), "\r") {
		t.Error("plain progress redraws lines")
	}
	if got := r.result(); got.Phase != "finish" || got.Transferred != 40<<20 {
		t.Errorf("result %+v", got)
	}
}

func TestProgressShortRunIsQuiet(t *testing.T) {
	r, buf, c := testReporter(progressPlain)
	feed(r, c, 2)
	if buf.Len() != 0 {
		t.Errorf("a 2 s run printed progress:\n%s", buf)
	}
}

func TestProgressJSON(t *testing.T) {
	r, buf, c := testReporter(progressJSON)
	feed(r, c, 3)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("JSON progress printed %d lines:\n%s", len(lines), buf)
	}
	var evs []map[string]any
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		evs = append(evs, ev)
	}
	mid := evs[2]
	for _, k := range []string{"event", "op", "volume", "phase", "files", "bytes_total", "bytes_done", "transferred_bytes", "reused_bytes", "elapsed_seconds", "bytes_per_second", "eta_seconds"} {
		if _, ok := mid[k]; !ok {
			t.Errorf("progress line lacks %q: %s", k, lines[2])
		}
	}
	if mid["bytes_per_second"].(float64) != 10<<20 {
		t.Errorf("rate %v, want %d", mid["bytes_per_second"], 10<<20)
	}
	last := evs[len(evs)-1]
	if last["phase"] != "finish" || last["bytes_done"].(float64) != 100<<20 {
		t.Errorf("last line %s", lines[len(lines)-1])
	}
}

func TestProgressTTY(t *testing.T) {
	r, buf, c := testReporter(progressTTY)
	feed(r, c, 2)
	out := buf.String()
	if !strings.HasPrefix(out, "\r\x1b[K") || strings.Contains(out, "\n") {
		t.Errorf("terminal progress should redraw one line: %q", out)
	}
	if !strings.Contains(out, "MiB/s, ETA") {
		t.Errorf("terminal progress lacks rate and ETA: %q", out)
	}
	if !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("terminal progress not cleared at the end: %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a file is a terminal")
	}
}

func TestFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{850 * time.Millisecond: "850ms", 12 * time.Second: "12s", 185 * time.Second: "3m05s", 62 * time.Minute: "1h02m"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// An import finds the data of each file when it opens it, so the total
// grows while bytes are read (the 80 % → 81 % → 80 % of old): until the
// total is known the line shows a count and no ETA, and after it the
// percentage only goes up.
func TestProgressNeverGoesBackwards(t *testing.T) {
	r, buf, c := testReporter(progressTTY)
	r.update(snapshot.Progress{Phase: "scan"})
	var done, total uint64
	for i := 1; i <= 40; i++ {
		c.t = c.t.Add(250 * time.Millisecond)
		done += 2 << 20
		if i <= 20 {
			total = done + uint64(i%3)<<20 // found just ahead of the reader
		} else {
			total = 100 << 20
		}
		r.update(snapshot.Progress{Phase: "upload", Bytes: total, TotalKnown: i > 20, BytesDone: done})
	}
	r.done()
	last := -1
	for i, line := range strings.Split(buf.String(), "\r\x1b[K") {
		pct := -1
		if k := strings.Index(line, "%"); k >= 3 {
			fmt.Sscanf(strings.TrimSpace(line[k-3:k]), "%d", &pct)
		}
		unknown := strings.Contains(line, "found so far")
		switch {
		case unknown && (pct >= 0 || strings.Contains(line, "ETA")):
			t.Errorf("line %d shows a percentage or an ETA of a total still growing: %q", i, line)
		case pct >= 0 && pct < last:
			t.Errorf("line %d: %d%% after %d%%: progress went backwards: %q", i, pct, last, line)
		case pct >= 0:
			last = pct
		}
	}
	if last < 80 {
		t.Errorf("no percentage once the total was known (last %d%%):\n%q", last, buf.String())
	}
}
