package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// measure is one timed operation.
type measure struct {
	Wall   time.Duration
	CPU    time.Duration // user + system of every process
	RSSKiB int64         // sum over the processes of each one's peak RSS
}

// step is one process of a pipeline.
type step struct {
	args []string
	dir  string
	env  []string // added to the environment
}

func cmd(dir string, env []string, args ...string) step { return step{args: args, dir: dir, env: env} }

// runner runs processes, logging their stderr to a file.
type runner struct {
	log io.Writer
}

// pipeline runs the steps connected stdout to stdin and returns their
// measure and the last step's stdout. Peak RSS is the sum of each
// process's own peak: an upper bound of the pipeline's peak.
func (r *runner) pipeline(ctx context.Context, steps ...step) (measure, []byte, error) {
	var cmds []*exec.Cmd
	var pipes []io.Closer
	var out bytes.Buffer
	for i, s := range steps {
		c := exec.CommandContext(ctx, s.args[0], s.args[1:]...)
		c.Dir = s.dir
		c.Env = append(os.Environ(), s.env...)
		c.Stderr = r.log
		if i > 0 {
			pr, err := cmds[i-1].StdoutPipe()
			if err != nil {
				return measure{}, nil, err
			}
			c.Stdin = pr
			pipes = append(pipes, pr)
		}
		cmds = append(cmds, c)
	}
	cmds[len(cmds)-1].Stdout = &out
	fmt.Fprintf(r.log, "+ %s\n", describe(steps))
	start := time.Now()
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			return measure{}, nil, fmt.Errorf("%s: %w", c.Path, err)
		}
	}
	// Only the processes hold the pipes now: a consumer that dies
	// early gives its producer SIGPIPE instead of a hang.
	for _, p := range pipes {
		p.Close()
	}
	var m measure
	var errs []string
	// Wait from the end: a consumer's Wait closes nothing the producer
	// needs, and StdoutPipe readers must finish before their Wait.
	for i := len(cmds) - 1; i >= 0; i-- {
		c := cmds[i]
		err := c.Wait()
		if ps := c.ProcessState; ps != nil {
			if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
				m.RSSKiB += ru.Maxrss
				m.CPU += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", strings.Join(steps[i].args, " "), err))
		}
	}
	m.Wall = time.Since(start)
	if len(errs) > 0 {
		return m, out.Bytes(), fmt.Errorf("%s (see the log)", strings.Join(errs, "; "))
	}
	fmt.Fprintf(r.log, "  %.2fs wall, %.2fs cpu, %d MiB peak\n", m.Wall.Seconds(), m.CPU.Seconds(), m.RSSKiB/1024)
	return m, out.Bytes(), nil
}

// run runs one command.
func (r *runner) run(ctx context.Context, s step) (measure, []byte, error) {
	return r.pipeline(ctx, s)
}

// must runs an unmeasured command and returns its stdout.
func (r *runner) must(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	_, out, err := r.run(ctx, cmd(dir, env, args...))
	return out, err
}

func describe(steps []step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = strings.Join(s.args, " ")
	}
	return strings.Join(parts, " | ")
}

// dropCaches writes dirty pages and empties the page cache, so that every
// tool starts cold. It needs root; without it the caches stay warm and
// the report says so.
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil
}

// syncFS makes everything written under dir durable (syncfs on its file
// system): every restore is timed until its data is on disk.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
