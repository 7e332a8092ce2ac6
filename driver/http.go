package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// Per-request deadlines. dockerd allows Create and Mount 2 min and the rest
// 1 min, but `docker plugin enable` caps every call at its --timeout (30 s
// by default), so every deadline here stays below 30 s. When the deadline
// passes, or dockerd hangs up first, a Mount is rolled back.
const (
	slowCallTimeout  = 25 * time.Second // Create, Remove, Mount, Unmount
	quickCallTimeout = 20 * time.Second // Get, List, Path
)

// maxBody bounds request bodies; real ones are a few hundred bytes.
const maxBody = 1 << 20

// bodyTimeout bounds reading a request body once its headers arrived
// (http.Server's ReadHeaderTimeout covers the headers): dockerd sends a
// few hundred bytes at once, so a client that stalls in the middle is
// gone or broken, and must not keep a handler (and the connection) for
// ever. It is not http.Server's ReadTimeout on purpose: that deadline
// stays on the connection while the call runs, and net/http's background
// read, which notices a hang-up, would take it for one and cancel every
// call slower than the timeout.
const bodyTimeout = 10 * time.Second

// contentType is what plugins conventionally answer with; dockerd ignores it.
const contentType = "application/vnd.docker.plugins.v1.1+json"

type request struct {
	Name string
	ID   string
	Opts map[string]string
}

type volumeJSON struct {
	Name       string
	Mountpoint string         `json:",omitempty"`
	CreatedAt  string         `json:",omitempty"`
	Status     map[string]any `json:",omitempty"`
}

// NewHandler serves the volume plugin protocol for d: POST /Plugin.Activate
// and /VolumeDriver.*, and the command line's calls (/Portvol.*, see
// AdminStatus). Errors are HTTP 500 with {"Err": "..."}; each call
// runs with a context that ends at its deadline or when dockerd hangs up.
// log receives one line per failed call (nil discards).
func NewHandler(d *Driver, log logrus.FieldLogger) http.Handler {
	if log == nil {
		log = d.log
	}
	h := &handler{d: d, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string][]string{"Implements": {"VolumeDriver"}})
	})
	mux.HandleFunc("POST /VolumeDriver.Capabilities", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string]any{"Capabilities": map[string]string{"Scope": d.Capabilities()}})
	})
	slow := d.callTimeout
	h.route(mux, "Create", slow, func(ctx context.Context, r request) (any, error) {
		return nil, d.Create(ctx, r.Name, r.Opts)
	})
	h.route(mux, "Remove", slow, func(ctx context.Context, r request) (any, error) {
		return nil, d.Remove(ctx, r.Name)
	})
	h.route(mux, "Mount", slow, func(ctx context.Context, r request) (any, error) {
		mp, err := d.Mount(ctx, r.Name, r.ID)
		return map[string]string{"Mountpoint": mp}, err
	})
	h.route(mux, "Unmount", slow, func(ctx context.Context, r request) (any, error) {
		return nil, d.Unmount(ctx, r.Name, r.ID)
	})
	h.route(mux, "Path", quickCallTimeout, func(ctx context.Context, r request) (any, error) {
		mp, err := d.Path(ctx, r.Name)
		return map[string]string{"Mountpoint": mp}, err
	})
	h.route(mux, "Get", quickCallTimeout, func(ctx context.Context, r request) (any, error) {
		v, err := d.Get(ctx, r.Name)
		return map[string]volumeJSON{"Volume": toJSON(v)}, err
	})
	h.route(mux, "List", quickCallTimeout, func(ctx context.Context, _ request) (any, error) {
		vols, err := d.List(ctx)
		out := make([]volumeJSON, 0, len(vols))
		for _, v := range vols {
			out = append(out, toJSON(v))
		}
		return map[string][]volumeJSON{"Volumes": out}, err
	})
	h.adminRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.WithField("path", r.URL.Path).Warn("unknown plugin call")
		reply(w, http.StatusNotFound, map[string]string{"Err": "portvol: unknown call " + r.Method + " " + r.URL.Path})
	})
	return mux
}

type handler struct {
	d   *Driver
	log logrus.FieldLogger
}

func (h *handler) route(mux *http.ServeMux, method string, timeout time.Duration, call func(context.Context, request) (any, error)) {
	mux.HandleFunc("POST /VolumeDriver."+method, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req request
		body, err := h.readBody(w, r)
		if err != nil {
			h.log.WithField("call", method).WithError(err).Warn("request body not received")
			reply(w, http.StatusRequestTimeout, map[string]string{"Err": "portvol: " + method + " request: " + err.Error()})
			return
		}
		if len(body) > 0 {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			h.log.WithField("call", method).WithError(err).Warn("malformed request")
			reply(w, http.StatusBadRequest, map[string]string{"Err": "portvol: malformed " + method + " request: " + err.Error()})
			return
		}
		// The body is read, so net/http now notices a hang-up and cancels
		// r.Context().
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		resp, err := call(ctx, req)
		log := h.log.WithField("call", method).WithField("duration", time.Since(start).Round(time.Millisecond).String())
		if req.Name != "" {
			log = log.WithField("volume", req.Name)
		}
		if req.ID != "" {
			log = log.WithField("mount_id", req.ID)
		}
		if err != nil {
			switch {
			case method == "Get" && errors.Is(err, ErrNotFound):
				log.WithError(err).Debug("call refused") // dockerd asks before every Create
			case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrInUse), errors.Is(err, ErrConflict), errors.Is(err, ErrBusy):
				log.WithError(err).Info("call refused")
			default:
				log.WithError(err).Error("call failed")
			}
			reply(w, http.StatusInternalServerError, map[string]string{"Err": err.Error()})
			return
		}
		log.Debug("call done")
		if method == "Mount" {
			h.answerMount(w, req, resp)
			return
		}
		if resp == nil {
			resp = struct{}{}
		}
		reply(w, http.StatusOK, resp)
	})
}

// readBody reads r's body (up to maxBody) within the driver's body
// deadline, then lifts the deadline again (see bodyTimeout).
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	timeout := h.d.bodyTimeout
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("set a read deadline: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		// The deadline stays: net/http reads what is left of the body
		// before it answers, and must not wait for it either.
		w.Header().Set("Connection", "close")
	} else {
		_ = rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil, fmt.Errorf("the request body did not arrive within %s of its headers; the client sent %d byte(s) of it and stalled", timeout, len(body))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	return body, nil
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func toJSON(v Volume) volumeJSON {
	out := volumeJSON{Name: v.Name, Mountpoint: v.Mountpoint, Status: v.Status}
	if !v.CreatedAt.IsZero() {
		out.CreatedAt = v.CreatedAt.Format(time.RFC3339)
	}
	return out
}
