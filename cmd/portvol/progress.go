package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"

	"github.com/portvol/portvol/snapshot"
)

// progressStyle is how progress reaches stderr.
type progressStyle int

const (
	progressPlain progressStyle = iota // a line every plainEvery
	progressTTY                        // one line redrawn in place
	progressJSON                       // a JSON object per line, every jsonEvery
)

const (
	plainEvery = 5 * time.Second
	jsonEvery  = time.Second
	ttyEvery   = 250 * time.Millisecond
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// reporter turns snapshot.Progress callbacks into progress output. It
// keeps the last report, which the commands use for their summary.
type reporter struct {
	w      io.Writer
	style  progressStyle
	op     string // "import" or "export"
	volume string
	now    func() time.Time

	mu         sync.Mutex
	start      time.Time
	phase      string
	phaseStart time.Time
	phaseDone  uint64 // BytesDone when the phase started
	printed    time.Time
	drawn      bool // a TTY line is on screen
	last       snapshot.Progress
	lastShown  snapshot.Progress
}

func newReporter(w io.Writer, asJSON bool, op, volume string) *reporter {
	style := progressPlain
	switch {
	case asJSON:
		style = progressJSON
	case isTerminal(w):
		style = progressTTY
	}
	r := &reporter{w: w, style: style, op: op, volume: volume, now: time.Now}
	r.start = r.now()
	return r
}

// update is the snapshot.Progress callback.
func (r *reporter) update(p snapshot.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.last = p
	if p.Phase != r.phase {
		r.phase, r.phaseStart, r.phaseDone = p.Phase, now, p.BytesDone
	}
	every := plainEvery
	switch r.style {
	case progressJSON:
		every = jsonEvery
	case progressTTY:
		every = ttyEvery
	}
	if now.Sub(r.printed) < every {
		return
	}
	if r.printed.IsZero() && r.style == progressPlain && now.Sub(r.start) < every {
		return // short runs print no progress lines at all
	}
	r.printed, r.lastShown = now, p
	switch r.style {
	case progressJSON:
		r.writeJSON(p, now)
	case progressTTY:
		fmt.Fprintf(r.w, "\r\x1b[K%s", r.line(p, now))
		r.drawn = true
	case progressPlain:
		fmt.Fprintln(r.w, r.line(p, now))
	}
}

// done ends the progress output once the operation returned: the last
// state as a JSON line, or the terminal line cleared for the result.
func (r *reporter) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.style {
	case progressJSON:
		if r.last != r.lastShown {
			r.writeJSON(r.last, r.now())
		}
	case progressTTY:
		if r.drawn {
			fmt.Fprint(r.w, "\r\x1b[K")
			r.drawn = false
		}
	}
}

// message reports progress that has no byte counts (a takeover watching
// a lease): redrawn on a terminal, as a JSON object with "message", or as
// a line — the first at once, then one every plainEvery.
func (r *reporter) message(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	switch r.style {
	case progressJSON:
		data, err := json.Marshal(messageEvent{Event: "progress", Op: r.op, Volume: r.volume, Phase: "watch",
			Message: s, ElapsedSec: round3(now.Sub(r.start).Seconds())})
		if err == nil {
			fmt.Fprintf(r.w, "%s\n", data)
		}
	case progressTTY:
		fmt.Fprintf(r.w, "\r\x1b[K%s %s: %s", r.op, r.volume, s)
		r.drawn = true
	case progressPlain:
		if r.printed.IsZero() || now.Sub(r.printed) >= plainEvery {
			fmt.Fprintf(r.w, "%s %s: %s\n", r.op, r.volume, s)
			r.printed = now
		}
	}
}

// messageEvent is a JSON progress line without byte counts. Field names
// are stable.
type messageEvent struct {
	Event      string  `json:"event"` // "progress"
	Op         string  `json:"op"`
	Volume     string  `json:"volume"`
	Phase      string  `json:"phase"` // "watch"
	Message    string  `json:"message"`
	ElapsedSec float64 `json:"elapsed_seconds"`
}

// result is the last progress reported.
func (r *reporter) result() snapshot.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// rate is the byte rate of the current phase and, once the total is
// known, the time left at that rate (etaOK false before: an ETA against a
// total that is still growing would be a promise nobody can keep).
func (r *reporter) rate(p snapshot.Progress, now time.Time) (perSec float64, eta time.Duration, ok, etaOK bool) {
	el := now.Sub(r.phaseStart).Seconds()
	done := p.BytesDone - min(p.BytesDone, r.phaseDone)
	if el < 0.5 || done == 0 {
		return 0, 0, false, false
	}
	perSec = float64(done) / el
	if !p.TotalKnown {
		return perSec, 0, true, false
	}
	left := float64(p.Bytes - min(p.Bytes, p.BytesDone))
	return perSec, time.Duration(left / perSec * float64(time.Second)), true, true
}

func (r *reporter) line(p snapshot.Progress, now time.Time) string {
	var b strings.Builder
	phase := p.Phase
	if phase == "finish" {
		phase = "finishing"
	}
	fmt.Fprintf(&b, "%s %s: %s", r.op, r.volume, phase)
	if p.Bytes == 0 {
		fmt.Fprintf(&b, ", %s", fmtDuration(now.Sub(r.start)))
		return b.String()
	}
	if p.TotalKnown {
		pct := 100 * float64(p.BytesDone) / float64(p.Bytes)
		fmt.Fprintf(&b, " %3.0f%% %s of %s", pct, humanize.IBytes(p.BytesDone), humanize.IBytes(p.Bytes))
	} else {
		// A count until the total is known: the total grows as files are
		// opened, and a percentage of it would go backwards.
		fmt.Fprintf(&b, " %s of %s found so far", humanize.IBytes(p.BytesDone), humanize.IBytes(p.Bytes))
	}
	if perSec, eta, ok, etaOK := r.rate(p, now); ok {
		fmt.Fprintf(&b, ", %s/s", humanize.IBytes(uint64(perSec)))
		if etaOK {
			fmt.Fprintf(&b, ", ETA %s", fmtDuration(eta))
		}
	}
	if p.Reused > 0 {
		fmt.Fprintf(&b, ", %s reused", humanize.IBytes(p.Reused))
	}
	return b.String()
}

// progressEvent is one JSON progress line. Field names are stable.
type progressEvent struct {
	Event       string  `json:"event"` // "progress"
	Op          string  `json:"op"`
	Volume      string  `json:"volume"`
	Phase       string  `json:"phase"`
	Files       uint64  `json:"files"`
	BytesTotal  uint64  `json:"bytes_total"`
	TotalKnown  bool    `json:"bytes_total_known"` // false: bytes_total still grows
	BytesDone   uint64  `json:"bytes_done"`
	Transferred uint64  `json:"transferred_bytes"`
	Reused      uint64  `json:"reused_bytes"`
	ElapsedSec  float64 `json:"elapsed_seconds"`
	RateBPS     float64 `json:"bytes_per_second,omitempty"`
	ETASec      float64 `json:"eta_seconds,omitempty"`
}

func (r *reporter) writeJSON(p snapshot.Progress, now time.Time) {
	ev := progressEvent{
		Event: "progress", Op: r.op, Volume: r.volume, Phase: p.Phase, Files: p.Files,
		BytesTotal: p.Bytes, TotalKnown: p.TotalKnown, BytesDone: p.BytesDone, Transferred: p.Transferred, Reused: p.Reused,
		ElapsedSec: round3(now.Sub(r.start).Seconds()),
	}
	if perSec, eta, ok, etaOK := r.rate(p, now); ok {
		ev.RateBPS = round3(perSec)
		if etaOK {
			ev.ETASec = round3(eta.Seconds())
		}
	}
	data, _ := json.Marshal(ev)
	fmt.Fprintf(r.w, "%s\n", data)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// fmtDuration prints d for people: 850ms, 12s, 3m05s, 1h02m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
