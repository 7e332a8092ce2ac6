package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/portvol/portvol/driver"
	"github.com/portvol/portvol/snapshot"
)

// pluginSocketDir is where dockerd looks for plugin sockets: a standalone
// portvol serves <dir>/portvol.sock, a managed plugin <dir>/<id>/portvol.sock.
const pluginSocketDir = "/run/docker/plugins"

// findPluginSocket returns the socket of the portvol serving this host:
// flag if given, else <dir>/portvol.sock if it exists (standalone), else
// the only <dir>/*/portvol.sock (managed plugin).
func findPluginSocket(flag, dir string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	standalone := filepath.Join(dir, "portvol.sock")
	if st, err := os.Stat(standalone); err == nil && st.Mode()&os.ModeSocket != 0 {
		return standalone, nil
	}
	managed, _ := filepath.Glob(filepath.Join(dir, "*", "portvol.sock"))
	switch len(managed) {
	case 0:
		return "", fmt.Errorf("no running portvol found (no %s and no %s): start it (docker plugin enable portvol, or systemctl start portvol), or name its socket with --socket", standalone, filepath.Join(dir, "*", "portvol.sock"))
	case 1:
		return managed[0], nil
	}
	return "", usageError{fmt.Errorf("several portvol plugins run on this host; choose one with --socket: %s", strings.Join(managed, ", "))}
}

// pluginClient calls the running plugin's /Portvol.* endpoints.
type pluginClient struct {
	sock string
	http *http.Client
}

func newPluginClient(flag string) (*pluginClient, error) {
	sock, err := findPluginSocket(flag, pluginSocketDir)
	if err != nil {
		return nil, err
	}
	return &pluginClient{sock: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}, nil
}

func (c *pluginClient) post(ctx context.Context, path string, req driver.AdminRequest) (*http.Response, error) {
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://portvol"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach portvol at %s: %w (is it running?)", c.sock, errors.Unwrap(err))
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, fmt.Errorf("portvol at %s does not know %s: upgrade the plugin to this command's version", c.sock, path)
	}
	return resp, nil
}

// call makes a quick call and decodes its answer into out.
func (c *pluginClient) call(ctx context.Context, path string, req driver.AdminRequest, out any) error {
	resp, err := c.post(ctx, path, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(json.NewDecoder(resp.Body), resp.StatusCode, out)
}

func decodeAnswer(dec *json.Decoder, status int, out any) error {
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("portvol answered with status %d and unreadable JSON: %w", status, err)
	}
	if e, ok := raw["Err"]; ok {
		pe := &pluginError{}
		if err := json.Unmarshal(e, &pe.msg); err != nil {
			return fmt.Errorf("portvol answered with an unreadable error: %w", err)
		}
		if k, ok := raw["Kind"]; ok {
			if err := json.Unmarshal(k, &pe.kind); err != nil {
				return fmt.Errorf("portvol answered with an unreadable error kind: %w", err)
			}
		}
		if pe.kind == "not_found" {
			pe.msg += ": check the name (portvol status lists this host's volumes, portvol volumes --store URL a store's)"
		}
		return pe
	}
	if status != http.StatusOK {
		return fmt.Errorf("portvol answered with status %d", status)
	}
	whole, _ := json.Marshal(raw)
	return json.Unmarshal(whole, out)
}

// progressLine is one progress line of a long call: a sentence, and for a
// restore its counts.
type progressLine struct {
	Progress *string
	Restore  *snapshot.Progress
	Pulled   *driver.PullResult // a follow's pull that changed the copy
}

// stream makes a long call: progress receives its progress lines, out the
// final answer ({"Result": ...}).
func (c *pluginClient) stream(ctx context.Context, path string, req driver.AdminRequest, progress func(progressLine), out any) error {
	resp, err := c.post(ctx, path, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeAnswer(json.NewDecoder(resp.Body), resp.StatusCode, out)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var line progressLine
		if err := json.Unmarshal(sc.Bytes(), &line); err == nil && line.Progress != nil {
			progress(line)
			continue
		}
		return decodeAnswer(json.NewDecoder(bytes.NewReader(sc.Bytes())), http.StatusOK, out)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("portvol at %s: %w", c.sock, err)
	}
	return fmt.Errorf("portvol at %s ended the answer early (did it restart?); check portvol status", c.sock)
}
