package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/portvol/portvol/lease"
	"github.com/portvol/portvol/snapshot"
)

// The portvol command line talks to the running plugin through these
// calls on the plugin's socket, because the plugin holds the store's
// configuration and credentials, the host id, the lease observations and
// the local state. Requests are POST with a JSON body
// {"Volume": "...", "Force": bool}. Quick calls answer 200 with a JSON
// object, or 500 with {"Err": "..."}. Long calls (Takeover, Pull) answer
// 200 with newline-delimited JSON: {"Progress": "..."} lines while they
// work (a pull's also carry "Restore": snapshot.Progress), then one {"Result": {...}} or {"Err": "...", "Kind": "..."} line
// (see adminError).
const (
	// AdminStatus answers {"Volumes": [VolumeStatus...]}; Volume "" means all.
	AdminStatus = "/Portvol.Status"
	// AdminTakeover streams progress, then {"Result": TakeoverResult}.
	AdminTakeover = "/Portvol.Takeover"
	// AdminPull streams progress, then {"Result": PullResult}.
	AdminPull = "/Portvol.Pull"
	// AdminFollow streams progress — {"Progress": "...", "Pulled":
	// PullResult} after each pull that changed the copy — until the
	// caller hangs up or this host owns the volume, then {"Result":
	// PullResult}. It has no time limit.
	AdminFollow = "/Portvol.Follow"
	// AdminUndelete answers {"Result": UndeleteResult}.
	AdminUndelete = "/Portvol.Undelete"
	// AdminConvert answers {"Result": ConvertResult}.
	AdminConvert = "/Portvol.Convert"
)

// AdminRequest is the body of the command line's calls.
type AdminRequest struct {
	Volume string
	Force  bool `json:",omitempty"`
	// Interval is how often a follow reads the head (0: the default).
	Interval time.Duration `json:",omitempty"`
}

// adminTimeout bounds a takeover (which may watch a lease for a TTL).
const adminTimeout = 10 * time.Minute

func (h *handler) adminRoutes(mux *http.ServeMux) {
	d := h.d
	h.adminCall(mux, AdminStatus, quickCallTimeout, func(ctx context.Context, r AdminRequest) (any, error) {
		vols, err := d.Status(ctx, r.Volume)
		return map[string]any{"Volumes": vols}, err
	})
	h.adminCall(mux, AdminUndelete, time.Minute, func(ctx context.Context, r AdminRequest) (any, error) {
		res, err := d.Undelete(ctx, r.Volume)
		return map[string]any{"Result": res}, err
	})
	h.adminCall(mux, AdminConvert, adminTimeout, func(ctx context.Context, r AdminRequest) (any, error) {
		res, err := d.Convert(ctx, r.Volume)
		return map[string]any{"Result": res}, err
	})
	h.adminStream(mux, AdminTakeover, adminTimeout, func(ctx context.Context, r AdminRequest, progress func(string, *snapshot.Progress)) (any, error) {
		return d.Takeover(ctx, r.Volume, r.Force, func(s string) { progress(s, nil) })
	})
	restoring := func(progress func(string, *snapshot.Progress)) func(snapshot.Progress) {
		return func(p snapshot.Progress) {
			if p.Bytes > 0 {
				progress(fmt.Sprintf("restoring: %s, %s fetched, %s reused", progressText(p), humanize.IBytes(p.Transferred), humanize.IBytes(p.Reused)), &p)
			} else {
				progress("restoring: reading the snapshot", &p)
			}
		}
	}
	h.adminStream(mux, AdminPull, adminTimeout, func(ctx context.Context, r AdminRequest, progress func(string, *snapshot.Progress)) (any, error) {
		return d.Pull(ctx, r.Volume, restoring(progress))
	})
	h.adminStreamRaw(mux, AdminFollow, 0, func(ctx context.Context, r AdminRequest, progress func(string, *snapshot.Progress), send func(any)) (any, error) {
		if r.Interval < 0 {
			return nil, errorf(ErrInvalid, "follow interval %v: must be positive", r.Interval)
		}
		return d.Follow(ctx, r.Volume, r.Interval, func(res PullResult) {
			send(map[string]any{"Progress": res.Message, "Pulled": res})
		}, restoring(progress), func(err error) {
			progress(fmt.Sprintf("cannot pull now (%v); trying again", err), nil)
		})
	})
}

// adminError is the answer to a failed call: the message, and its kind
// for the command line's exit code ("held": another host holds the
// volume; "key": the encryption key is missing or wrong; "not_found",
// "invalid", "unavailable", "busy"; "" otherwise).
func adminError(err error) map[string]string {
	kind := ""
	switch {
	case errors.Is(err, lease.ErrHeld):
		kind = "held"
	case errors.Is(err, snapshot.ErrKeyRequired), errors.Is(err, snapshot.ErrWrongKey),
		errors.Is(err, snapshot.ErrNotEncrypted), errors.Is(err, snapshot.ErrBadKey):
		kind = "key"
	case errors.Is(err, ErrNotFound):
		kind = "not_found"
	case errors.Is(err, ErrInvalid):
		kind = "invalid"
	case errors.Is(err, ErrUnavailable):
		kind = "unavailable"
	case errors.Is(err, ErrBusy):
		kind = "busy"
	}
	return map[string]string{"Err": err.Error(), "Kind": kind}
}

func (h *handler) decodeAdmin(w http.ResponseWriter, r *http.Request) (AdminRequest, error) {
	var req AdminRequest
	body, err := h.readBody(w, r)
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		return req, fmt.Errorf("portvol: malformed request: %w", err)
	}
	return req, nil
}

func (h *handler) adminCall(mux *http.ServeMux, path string, timeout time.Duration, call func(context.Context, AdminRequest) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		req, err := h.decodeAdmin(w, r)
		if err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"Err": err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		resp, err := call(ctx, req)
		if err != nil {
			h.log.WithField("call", path).WithField("volume", req.Volume).WithError(err).Info("command refused")
			reply(w, http.StatusInternalServerError, adminError(err))
			return
		}
		reply(w, http.StatusOK, resp)
	})
}

func (h *handler) adminStream(mux *http.ServeMux, path string, timeout time.Duration, call func(context.Context, AdminRequest, func(string, *snapshot.Progress)) (any, error)) {
	h.adminStreamRaw(mux, path, timeout, func(ctx context.Context, r AdminRequest, progress func(string, *snapshot.Progress), _ func(any)) (any, error) {
		return call(ctx, r, progress)
	})
}

// adminStreamRaw is adminStream whose call may also send lines of its
// own; timeout 0 is none (the call ends when the caller hangs up).
func (h *handler) adminStreamRaw(mux *http.ServeMux, path string, timeout time.Duration, call func(context.Context, AdminRequest, func(string, *snapshot.Progress), func(any)) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		req, err := h.decodeAdmin(w, r)
		if err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"Err": err.Error()})
			return
		}
		ctx, cancel := r.Context(), context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		var mu sync.Mutex
		enc := json.NewEncoder(w)
		send := func(v any) {
			mu.Lock()
			defer mu.Unlock()
			_ = enc.Encode(v)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		res, err := call(ctx, req, func(s string, p *snapshot.Progress) {
			if p == nil {
				send(map[string]string{"Progress": s})
				return
			}
			send(map[string]any{"Progress": s, "Restore": p})
		}, send)
		if err != nil {
			h.log.WithField("call", path).WithField("volume", req.Volume).WithError(err).Info("command failed")
			send(adminError(err))
			return
		}
		h.log.WithField("call", path).WithField("volume", req.Volume).Info("command done")
		send(map[string]any{"Result": res})
	})
}
