package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay is a TCP relay between one host's plugin and the S3 server: the
// host's own network path to the store. It counts the bytes each way, so
// a test can see how much a move transferred, and it can slow the path
// down (a slow uplink), so that a crash can land in the middle of an
// upload. It changes nothing in the bytes: S3 signatures stay valid.
type relay struct {
	Addr   string // "IP:PORT" to use as the store endpoint
	target string

	up   atomic.Int64 // bytes from the plugin to the store (uploads)
	down atomic.Int64 // bytes from the store to the plugin (downloads)
	deny atomic.Bool  // answer every request 403 AccessDenied (see setDeny)

	ln net.Listener

	mu    sync.Mutex
	rate  int64     // bytes per second in each direction; 0: unlimited
	next  time.Time // when the limited path is free again
	conns map[net.Conn]struct{}
	done  bool
}

// startRelay listens on ip (random port) and forwards to target until t
// ends.
func startRelay(t testing.TB, ip, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.handle(c)
	}
}

func (r *relay) handle(client net.Conn) {
	if r.deny.Load() {
		if r.track(client) {
			denyRequests(client)
			r.untrack(client)
		} else {
			client.Close()
		}
		return
	}
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		client.Close()
		return
	}
	if !r.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pipe(server, client, &r.up) }()
	go func() { defer wg.Done(); r.pipe(client, server, &r.down) }()
	wg.Wait()
	r.untrack(client, server)
}

func (r *relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
}

// pipe copies src to dst, counting into n and keeping to the rate.
func (r *relay) pipe(dst, src net.Conn, n *atomic.Int64) {
	buf := make([]byte, 16<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			r.wait(k)
			if _, werr := dst.Write(buf[:k]); werr != nil {
				src.Close()
				dst.Close()
				return
			}
			n.Add(int64(k))
		}
		if err == io.EOF {
			// Half-close: the other direction may still carry a response.
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
		if err != nil {
			src.Close()
			dst.Close()
			return
		}
	}
}

// wait blocks until k more bytes fit the rate (shared by all connections
// and both directions, like one slow link).
func (r *relay) wait(k int) {
	r.mu.Lock()
	if r.rate <= 0 {
		r.mu.Unlock()
		return
	}
	now := time.Now()
	if r.next.Before(now) {
		r.next = now
	}
	r.next = r.next.Add(time.Duration(int64(k) * int64(time.Second) / r.rate))
	until := r.next
	r.mu.Unlock()
	time.Sleep(time.Until(until))
}

// setRate limits the relay to bytesPerSecond (0: unlimited) from now on.
func (r *relay) setRate(bytesPerSecond int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rate = bytesPerSecond
	r.next = time.Time{}
}

// setDeny makes the store refuse every request from now on, as an S3
// service does after the credentials were revoked or the bucket policy
// changed (403 AccessDenied, which retrying cannot fix), or lets requests
// through again. Open connections are closed, so that no request slips
// through one made before.
func (r *relay) setDeny(on bool) {
	r.deny.Store(on)
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// denyRequests answers each HTTP request on c with 403 AccessDenied,
// after reading its body (a client that is still sending would see a
// broken connection instead of the answer).
func denyRequests(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		body := `<?xml version="1.0" encoding="UTF-8"?>` +
			`<Error><Code>AccessDenied</Code><Message>Access Denied (portvol test relay)</Message></Error>`
		if req.Method == http.MethodHead {
			body = ""
		}
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// counters returns the bytes relayed so far: up (to the store) and down.
func (r *relay) counters() (up, down int64) { return r.up.Load(), r.down.Load() }

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	r.done = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
}
