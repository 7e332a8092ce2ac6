package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgWriter is a client of a PostgreSQL service that may run on any of a
// set of nodes (host networking, port 5432): it commits numbered rows,
// one per transaction, to whichever node answers, and records every
// commit it saw acknowledged — the row, the node, when it sent it and
// when the acknowledgement came. A commit whose answer was lost is sent
// again (INSERT ... ON CONFLICT DO NOTHING), so every row up to the
// newest is acknowledged exactly once, in order.
type pgWriter struct {
	nodes map[string]string // address → node name
	pace  time.Duration     // pause between commits

	mu   sync.Mutex
	acks []pgAck
	errs int // failed attempts (connect or commit)

	cancel context.CancelFunc
	done   chan struct{}
}

// pgAck is one acknowledged commit.
type pgAck struct {
	id       int
	node     string
	sent, at time.Time
}

// pgTable is where the writer commits.
const pgTable = "acked"

// startPGWriter starts committing; it stops when t ends (or stop).
func startPGWriter(t *testing.T, nodes map[string]string) *pgWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &pgWriter{nodes: nodes, pace: 20 * time.Millisecond, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	t.Cleanup(w.stop)
	return w
}

func (w *pgWriter) stop() {
	w.cancel()
	<-w.done
}

func (w *pgWriter) run(ctx context.Context) {
	defer close(w.done)
	var conn *pgx.Conn
	node := ""
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for id := 1; ctx.Err() == nil; {
		if conn == nil {
			var err error
			if conn, node, err = w.connect(ctx); err != nil {
				w.failed()
				sleepCtx(ctx, 50*time.Millisecond)
				continue
			}
			if _, err := w.exec(ctx, conn, "CREATE TABLE IF NOT EXISTS "+pgTable+" (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
				conn.Close(context.Background())
				conn = nil
				w.failed()
				continue
			}
		}
		sent := time.Now()
		if _, err := w.exec(ctx, conn, "INSERT INTO "+pgTable+" (id) VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
			// Unknown outcome: the same row again, on whatever answers next.
			conn.Close(context.Background())
			conn = nil
			w.failed()
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, pgAck{id: id, node: node, sent: sent, at: time.Now()})
		w.mu.Unlock()
		id++
		sleepCtx(ctx, w.pace)
	}
}

func (w *pgWriter) exec(ctx context.Context, conn *pgx.Conn, sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tag, err := conn.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (w *pgWriter) failed() {
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
}

// connect connects to the node that accepts connections on 5432 (the one
// running the task: the others refuse, or do not answer at all when they
// are down).
func (w *pgWriter) connect(ctx context.Context) (*pgx.Conn, string, error) {
	addr := listening(ctx, w.nodes)
	if len(addr) == 0 {
		return nil, "", errors.New("no node accepts connections")
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, pgConnString(addr[0]))
	if err != nil {
		return nil, "", err
	}
	return conn, w.nodes[addr[0]], nil
}

// pgConnString is the connection string of the test PostgreSQL at addr
// (trust authentication, no TLS).
func pgConnString(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable connect_timeout=3", host, port)
}

// listening returns the addresses among nodes' that accept a TCP
// connection now, asking all of them at once.
func listening(ctx context.Context, nodes map[string]string) []string {
	var mu sync.Mutex
	var up []string
	var wg sync.WaitGroup
	for addr := range nodes {
		wg.Go(func() {
			d := net.Dialer{Timeout: 300 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return
			}
			c.Close()
			mu.Lock()
			up = append(up, addr)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Strings(up)
	return up
}

// acked returns the commits acknowledged so far, oldest first.
func (w *pgWriter) acked() []pgAck {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// waitAcks waits until n more commits than now were acknowledged by node
// ("" for any) and returns the newest.
func (w *pgWriter) waitAcks(t *testing.T, limit time.Duration, node string, n int) pgAck {
	t.Helper()
	start := len(w.acked())
	var last pgAck
	waitFor(t, limit, fmt.Sprintf("%d commits acknowledged by %q", n, node), func() bool {
		acks := w.acked()
		k := 0
		for _, a := range acks[start:] {
			if node == "" || a.node == node {
				k++
				last = a
			}
		}
		return k >= n
	})
	return last
}

// rows reads the ids in the table from the node that serves now.
func (w *pgWriter) rows(t *testing.T) map[int]bool {
	t.Helper()
	var ids map[int]bool
	waitFor(t, time.Minute, "the database to answer a read", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, _, err := w.connect(ctx)
		if err != nil {
			return false
		}
		defer conn.Close(context.Background())
		r, err := conn.Query(ctx, "SELECT id FROM "+pgTable)
		if err != nil {
			return false
		}
		got, err := pgx.CollectRows(r, pgx.RowTo[int])
		if err != nil {
			return false
		}
		ids = map[int]bool{}
		for _, id := range got {
			ids[id] = true
		}
		return true
	})
	return ids
}

// missing lists the acknowledged ids among acks that rows lacks.
func missing(acks []pgAck, rows map[int]bool) []int {
	var m []int
	for _, a := range acks {
		if !rows[a.id] {
			m = append(m, a.id)
		}
	}
	return m
}

// handover finds, among acks, the first change of node after since: the
// last commit acknowledged before it and the first after it.
func handover(acks []pgAck, since time.Time) (before, after pgAck, ok bool) {
	for i := 1; i < len(acks); i++ {
		if acks[i].at.After(since) && acks[i].node != acks[i-1].node {
			return acks[i-1], acks[i], true
		}
	}
	return pgAck{}, pgAck{}, false
}

// commitLog summarises acks after since: runs of commits by one node,
// with their ids and times.
func commitLog(acks []pgAck, since time.Time) string {
	var b strings.Builder
	for i := 0; i < len(acks); {
		j := i
		for j+1 < len(acks) && acks[j+1].node == acks[i].node {
			j++
		}
		if acks[j].at.After(since) {
			fmt.Fprintf(&b, "%s: rows %d-%d, %s-%s\n", acks[i].node, acks[i].id, acks[j].id,
				acks[i].at.Format("15:04:05.000"), acks[j].at.Format("15:04:05.000"))
		}
		i = j + 1
	}
	return b.String()
}

// idRanges prints ids compactly: "3-7, 9".
func idRanges(ids []int) string {
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ids[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ids[i], ids[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// pgWatch probes every node for a PostgreSQL server listening on 5432,
// ten times a second, and records every moment when more than one node
// had one: two servers of one database at once would be two writers.
type pgWatch struct {
	mu      sync.Mutex
	overlap []string
	probes  int
	cancel  context.CancelFunc
	done    chan struct{}
}

func startPGWatch(t *testing.T, nodes map[string]string) *pgWatch {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pgWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			up := listening(ctx, nodes)
			p.mu.Lock()
			p.probes++
			if len(up) > 1 {
				var names []string
				for _, a := range up {
					names = append(names, nodes[a])
				}
				p.overlap = append(p.overlap, time.Now().Format("15:04:05.000")+" "+strings.Join(names, "+"))
			}
			p.mu.Unlock()
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

// check fails t if two nodes served at once since the last check.
func (p *pgWatch) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.overlap) > 0 {
		t.Errorf("PostgreSQL listened on two nodes at once (%d of %d probes): %s", len(p.overlap), p.probes, strings.Join(p.overlap, "; "))
	}
	p.overlap, p.probes = nil, 0
}
