package driver

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that sends a call's headers and then stalls in its body is
// answered (408, saying what is wrong) and let go once the body deadline
// passes; it does not hold a handler, or its connection, for ever. A call
// that runs longer than that deadline is not cut short by it.
func TestStalledRequestBodyIsLetGo(t *testing.T) {
	requireRoot(t)
	e := newHost(t, "test-host", t.TempDir()+"/store")
	e.tune = func(d *Driver) { d.bodyTimeout = 300 * time.Millisecond }
	g := &gateMounter{entered: make(chan string, 1), gate: make(chan struct{})}
	e.start(g)
	e.ok("VolumeDriver.Create", map[string]any{"Name": "v"})

	for _, path := range []string{"/VolumeDriver.Mount", AdminStatus} {
		conn, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Headers promise 200 bytes; 9 come, then nothing.
		if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: plugin\r\nContent-Length: 200\r\n\r\n{\"Name\": "); err != nil {
			t.Fatal(err)
		}
		// The bound only keeps a broken handler from hanging the test.
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s with a stalled body: no answer (%v): the handler still waits for the body", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "did not arrive") {
			t.Errorf("%s with a stalled body: %d %s", path, resp.StatusCode, body)
		}
	}

	// A Mount slower than the body deadline still succeeds: the deadline
	// ends with the body, so net/http does not take it for a hang-up.
	done := make(chan map[string]any, 1)
	go func() { done <- e.ok("VolumeDriver.Mount", mountID("v", "a")) }()
	<-g.entered
	time.Sleep(3 * e.d.bodyTimeout) // past the body deadline, while Mount works
	close(g.gate)
	if mp, _ := (<-done)["Mountpoint"].(string); mp == "" {
		t.Fatal("slow Mount returned no Mountpoint")
	}
	if n := e.mounts("v"); n != 1 {
		t.Errorf("mounts after the slow Mount = %d, want 1", n)
	}
	e.ok("VolumeDriver.Unmount", mountID("v", "a"))
}
