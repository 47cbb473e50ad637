package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process supervise runs: env is added to dev's own environment.
type proc struct {
	name string
	path string
	args []string
	env  []string
}

// supervise starts every proc and waits until ctx ends or one of them
// exits. Then it sends SIGTERM to those still running and waits for them,
// killing any that has not exited after grace. Every line a proc writes goes
// to out prefixed with its name, as do supervise's own lines (prefixed
// "dev").
//
// It returns an error naming the proc that exited first, when one did
// before ctx ended, and the procs that did not stop cleanly.
func supervise(ctx context.Context, procs []proc, out io.Writer, grace time.Duration) error {
	width := len("dev")
	for _, p := range procs {
		width = max(width, len(p.name))
	}
	var mu sync.Mutex // one line at a time on out
	say := newPrefixWriter(out, &mu, "dev", width)
	defer say.Flush()

	type exit struct {
		name string
		err  error
	}
	exits := make(chan exit, len(procs))
	running := map[string]*exec.Cmd{}
	var startErr error
	for _, p := range procs {
		cmd := exec.Command(p.path, p.args...) //nolint:gosec,noctx // dev runs the binaries it was pointed at, and stops them with SIGTERM, not a cancelled context
		cmd.Env = append(os.Environ(), p.env...)
		w := newPrefixWriter(out, &mu, p.name, width)
		cmd.Stdout, cmd.Stderr = w, w
		// A process group of its own: Ctrl-C in the terminal reaches dev
		// alone, and each service gets the one SIGTERM dev sends.
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			startErr = fmt.Errorf("start %s: %w", p.name, err)
			break
		}
		running[p.name] = cmd
		go func() {
			err := cmd.Wait()
			w.Flush()
			exits <- exit{name: p.name, err: err}
		}()
	}

	var first error
	if startErr != nil {
		first = startErr
	} else {
		select {
		case <-ctx.Done():
			fmt.Fprintln(say, "stopping the services")
		case e := <-exits:
			delete(running, e.name)
			first = fmt.Errorf("%s exited (%s)", e.name, describe(e.err))
			fmt.Fprintf(say, "%v: stopping the others\n", first)
		}
	}
	for _, cmd := range running {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = cmd.Process.Kill()
		}
	}
	errs := []error{first}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for len(running) > 0 {
		select {
		case e := <-exits:
			delete(running, e.name)
			if !stoppedByTerm(e.err) {
				errs = append(errs, fmt.Errorf("%s stopped (%s)", e.name, describe(e.err)))
			}
		case <-timer.C:
			for name, cmd := range running {
				fmt.Fprintf(say, "%s did not stop within %s: killing it\n", name, grace)
				_ = cmd.Process.Kill()
			}
		}
	}
	return errors.Join(errs...)
}

// stoppedByTerm reports whether a process dev sent SIGTERM ended as asked:
// it exited with status 0, or SIGTERM ended it before it handled signals.
func stoppedByTerm(err error) bool {
	var exitErr *exec.ExitError
	if err == nil {
		return true
	}
	if !errors.As(err, &exitErr) {
		return false
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// describe says how a process ended: "exit status 1", "signal: killed".
func describe(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// prefixWriter writes each complete line it is given to out, prefixed with
// a name padded to width, under a lock shared by all writers to out.
type prefixWriter struct {
	out    io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte // a line not yet complete
	own    sync.Mutex
}

func newPrefixWriter(out io.Writer, mu *sync.Mutex, name string, width int) *prefixWriter {
	return &prefixWriter{out: out, mu: mu, prefix: name + strings.Repeat(" ", width-len(name)) + " | "}
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.own.Lock()
	defer w.own.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
}

// Flush writes a last line that had no newline.
func (w *prefixWriter) Flush() {
	w.own.Lock()
	defer w.own.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}

func (w *prefixWriter) emit(line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = io.WriteString(w.out, w.prefix)
	_, _ = w.out.Write(line)
}

// stopWhenOrphaned returns a context that also ends when the process's
// parent exits (the process is then reparented), checked every interval:
// go-task keeps a signal to itself from its commands and exits after the
// third, and dev must not leave the services behind.
func stopWhenOrphaned(ctx context.Context, interval time.Duration) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}
