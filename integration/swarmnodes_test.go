package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// swarm is a Docker swarm of a cluster's private engines: every node a
// manager (so that any one of them can be lost and the other two keep
// the quorum), each with the portvol plugin from the same build and with
// the same settings, all on one S3 store. Nodes talk over the cluster's
// lan; the machine's engine is not part of it and is not touched.
//
// The dispatcher heartbeat is 1 s (default 5 s), so that a lost node is
// declared down, and its tasks rescheduled, within seconds.
type swarm struct {
	*cluster
	ids map[string]string // host name → swarm node id

	mu   sync.Mutex
	down map[string]bool // hosts whose engine is off or restarting
}

// swarmLabel is the node label the test's service is constrained to:
// setting it on a subset of nodes pins the service there (Swarm moves a
// task off a node that no longer satisfies the constraint).
const swarmLabel = "portvol-db"

func newSwarm(t *testing.T, opts clusterOptions) *swarm {
	t.Helper()
	c := newCluster(t, opts)
	s := &swarm{cluster: c, ids: map[string]string{}, down: map[string]bool{}}
	first := c.hosts()[0]
	first.docker(t, "swarm", "init", "--advertise-addr", first.pe.addr, "--listen-addr", first.pe.addr+":2377",
		"--dispatcher-heartbeat", "1s", "--task-history-limit", "100")
	token := first.docker(t, "swarm", "join-token", "-q", "manager")
	for _, h := range c.hosts()[1:] {
		h.docker(t, "swarm", "join", "--token", token, "--advertise-addr", h.pe.addr, "--listen-addr", h.pe.addr+":2377",
			first.pe.addr+":2377")
	}
	for _, h := range c.hosts() {
		s.ids[h.name] = h.docker(t, "info", "-f", "{{.Swarm.NodeID}}")
	}
	// Before the engines stop (cleanups run last-in first-out): no
	// service restarting containers under the engines' clean-up, and no
	// engine waiting out a database's stop grace period.
	t.Cleanup(func() {
		// The tasks and logs are read before the service is removed (a
		// removed service has neither).
		if t.Failed() {
			out, _ := s.cli("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.ID}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}", "db-"+runID)
			t.Logf("tasks:\n%s", out)
			out, _ = s.cli("service", "logs", "--timestamps", "db-"+runID)
			t.Logf("service logs (tail):\n%s", tail(out, 20000))
		}
		if out, err := s.cli("service", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				s.cli("service", "rm", id)
			}
		}
		for _, h := range c.hosts() {
			h.pe.powerOff()
		}
	})
	t.Logf("swarm: %s", s.cliMust(t, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}} {{.Status}}"))
	return s
}

// host returns the host named name.
func (s *swarm) host(name string) *host {
	for _, h := range s.hosts() {
		if h.name == name {
			return h
		}
	}
	s.t.Fatalf("no host %q in the swarm", name)
	return nil
}

// setDown marks a host's engine as off (or back on): swarm commands go to
// the others.
func (s *swarm) setDown(h *host, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[h.name] = down
}

// cli runs a docker command against a manager whose engine is on. While
// the managers elect a new leader (the old one was lost), it tries again
// for up to a minute.
func (s *swarm) cli(args ...string) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := s.cliOnce(args...)
		transient := strings.Contains(out, "DeadlineExceeded") || strings.Contains(out, "context deadline exceeded") ||
			strings.Contains(out, "does not have a leader") ||
			strings.Contains(out, "Unavailable")
		if err == nil || !transient || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *swarm) cliOnce(args ...string) (string, error) {
	var out string
	err := fmt.Errorf("no manager is up")
	for _, h := range s.hosts() {
		s.mu.Lock()
		down := s.down[h.name]
		s.mu.Unlock()
		if down {
			continue
		}
		if out, err = h.eng.cli(args...); err == nil || !strings.Contains(out, "Cannot connect to the Docker daemon") {
			return out, err
		}
	}
	return out, err
}

// cliMust is cli that fails the test on error.
func (s *swarm) cliMust(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// allow lets the service run on the named hosts only (the label is yes
// there, no elsewhere).
func (s *swarm) allow(t *testing.T, names ...string) {
	t.Helper()
	for _, h := range s.hosts() {
		v := "no"
		if slices.Contains(names, h.name) {
			v = "yes"
		}
		s.cliMust(t, "node", "update", "--label-add", swarmLabel+"="+v, s.ids[h.name])
	}
}

// swarmTask is one task of a service as docker service ps shows it.
type swarmTask struct {
	ID, Node, DesiredState, CurrentState, Error string
}

// tasks lists the service's tasks, newest first.
func (s *swarm) tasks(t *testing.T, service string) []swarmTask {
	t.Helper()
	out := s.cliMust(t, "service", "ps", "--no-trunc", "--format", "{{json .}}", service)
	var ts []swarmTask
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		var task swarmTask
		if err := json.Unmarshal([]byte(line), &task); err != nil {
			t.Fatalf("docker service ps: %q: %v", line, err)
		}
		ts = append(ts, task)
	}
	return ts
}

// running returns the service's running task, if any.
func (s *swarm) running(t *testing.T, service string) (swarmTask, bool) {
	t.Helper()
	for _, task := range s.tasks(t, service) {
		if task.DesiredState == "Running" && strings.HasPrefix(task.CurrentState, "Running") {
			return task, true
		}
	}
	return swarmTask{}, false
}

// waitRunning waits until the service's running task is on a node ok
// accepts and is not one of the tasks in old; it returns it.
func (s *swarm) waitRunning(t *testing.T, service string, limit time.Duration, ok func(node string) bool, old ...string) swarmTask {
	t.Helper()
	var task swarmTask
	waitFor(t, limit, "the service's task to run on a node it may run on", func() bool {
		var found bool
		task, found = s.running(t, service)
		return found && ok(task.Node) && !slices.Contains(old, task.ID)
	})
	return task
}

// failures returns the errors of the service's failed or rejected tasks.
func (s *swarm) failures(t *testing.T, service string) []string {
	t.Helper()
	var errs []string
	for _, task := range s.tasks(t, service) {
		if task.Error != "" {
			errs = append(errs, task.Node+": "+task.Error)
		}
	}
	return errs
}

// history is docker service ps, for the log.
func (s *swarm) history(t *testing.T, service string) string {
	t.Helper()
	out, _ := s.cli("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}", service)
	return strings.TrimSpace(out)
}
