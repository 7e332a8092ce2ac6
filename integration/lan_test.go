package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lan is a private network for engines in namespaces of their own (see
// privateEngine): a bridge in a network namespace of its own (the
// switch), one veth pair from the switch to each engine, and one to the
// machine, whose end (gw) is where the tests' servers (S3, relays)
// listen. Engines reach each other and the machine through it, and only
// through it.
//
// The bridge lives in its own namespace, not the machine's: with
// br_netfilter loaded, frames bridged in the machine's namespace go
// through the machine's FORWARD chain, which the machine's dockerd sets
// to DROP.
//
// Addresses: a /24 of 10.231.0.0/16 that no interface of the machine
// uses: the machine's end .1, engines .11, .12, ... in the order they
// join (an engine keeps its address when it joins again after a power
// cycle).
type lan struct {
	t      *testing.T
	prefix string // "10.231.X."
	gw     string // the machine's address on the lan
	sw     *exec.Cmd
	outer  string // the machine's veth

	mu    sync.Mutex
	addrs map[string]string // engine name → address
	ports map[string]string // engine name → its port on the switch
}

// lanMu serialises the choice of a subnet between clusters of one test
// process (parallel tests).
var lanMu sync.Mutex

// newLAN makes the switch and the machine's link to it; both go away when
// t ends.
func newLAN(t *testing.T) *lan {
	t.Helper()
	l := &lan{t: t, addrs: map[string]string{}, ports: map[string]string{}}
	l.sw = exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up && ip link add br0 type bridge && ip link set br0 up && echo ready && exec sleep 86400")
	l.sw.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waitReady(t, l.sw, "the switch namespace")
	t.Cleanup(func() {
		l.sw.Process.Kill()
		l.sw.Wait()
	})

	lanMu.Lock()
	defer lanMu.Unlock()
	out, _ := run(context.Background(), "", "ip", "-4", "-o", "addr", "show")
	for {
		x := rand.IntN(255)
		l.prefix = fmt.Sprintf("10.231.%d.", x)
		if !strings.Contains(out, " "+l.prefix) {
			break
		}
	}
	l.gw = l.prefix + "1"
	id := randomHex(3)
	l.outer = "pvl" + id + "g"
	sw := strconv.Itoa(l.sw.Process.Pid)
	if out, err := run(context.Background(), "", "ip", "link", "add", l.outer, "type", "veth", "peer", "name", "uplink", "netns", sw); err != nil {
		t.Fatalf("ip link add %s: %v\n%s", l.outer, err, out)
	}
	t.Cleanup(func() { run(context.Background(), "", "ip", "link", "del", l.outer) })
	for _, s := range [][]string{{"ip", "addr", "add", l.gw + "/24", "dev", l.outer}, {"ip", "link", "set", l.outer, "up"}} {
		if out, err := run(context.Background(), "", s[0], s[1:]...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	l.inSwitch("ip", "link", "set", "uplink", "master", "br0", "up")
	t.Logf("lan %s0/24: the machine at %s (%s)", l.prefix, l.gw, l.outer)
	return l
}

// inSwitch runs a command in the switch's namespace.
func (l *lan) inSwitch(args ...string) {
	l.t.Helper()
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(l.sw.Process.Pid), "-n", "--"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("in the switch namespace: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// attach plugs engine pe into the switch (interface eth0 in pe's network
// namespace) and returns its address: the one it had before if it was
// attached already (a node that boots again).
func (l *lan) attach(pe *privateEngine) string {
	t := l.t
	t.Helper()
	l.mu.Lock()
	addr, ok := l.addrs[pe.name]
	if !ok {
		addr = l.prefix + strconv.Itoa(11+len(l.addrs))
		l.addrs[pe.name] = addr
		l.ports[pe.name] = "pvl" + randomHex(3) + "p"
	}
	port := l.ports[pe.name]
	l.mu.Unlock()
	l.inSwitch("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pe.holder.Process.Pid))
	l.inSwitch("ip", "link", "set", port, "master", "br0", "up")
	for _, s := range [][]string{{"ip", "addr", "add", addr + "/24", "dev", "eth0"}, {"ip", "link", "set", "eth0", "up"}} {
		if out, err := pe.command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("in %s's namespace: %s: %v\n%s", pe.name, strings.Join(s, " "), err, out)
		}
	}
	return addr
}

// waitReady starts cmd and waits for its first line of output to be
// "ready".
func waitReady(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s: %q", what, line)
	}
}
