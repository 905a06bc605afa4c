package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process (the api, the consumer, a tool a check runs)
// that can be started, signalled and started again. It runs in its own
// process group, so a Ctrl-C at the terminal reaches only the parent
// (which then stops it), and it is SIGKILLed if the parent dies. An exit
// the parent did not cause (through Signal, Stop or Kill) is a crash.
type Proc struct {
	Name string   // for messages
	Path string   // the executable
	Args []string // its arguments
	Env  []string // its whole environment; nil: this process's
	Dir  string   // its working directory; "": this process's
	// Log is a file the output is appended to, across restarts. When it
	// is empty the output goes to Output (nil: discarded).
	Log    string
	Output io.Writer
	// Ready says when the process is ready (see WaitReady); nil: as soon
	// as it is started.
	Ready Probe

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exited
	expect  bool          // the parent is ending the current process
	crashes []string
	started time.Time
	state   *os.ProcessState
}

// Start starts the process; it must not be running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	out := p.Output
	var logf *os.File
	if p.Log != "" {
		f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		logf, out = f, f
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env, cmd.Dir = p.Env, p.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expect, p.started, p.state = cmd, done, false, time.Now(), nil
	go func() {
		err := cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.expect {
			p.crashes = append(p.crashes, fmt.Sprintf("%s (pid %d, up %s): %v", p.Name, cmd.Process.Pid,
				time.Since(p.started).Round(time.Second), err))
		}
		p.state = cmd.ProcessState
		if p.cmd == cmd {
			p.cmd = nil
		}
		close(done)
	}()
	return nil
}

// Pid is the running process's id, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the process last started exits (nil before Start).
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// State says how the process last started exited (nil while it runs).
func (p *Proc) State() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Signal sends sig to the running process and waits up to grace for it to
// exit, SIGKILLing it then (and saying so in the error). The exit is not
// a crash.
func (p *Proc) Signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: not running", p.Name)
	}
	p.expect = true
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("%s (pid %d) did not exit within %s of signal %d; killed", p.Name, cmd.Process.Pid, grace, sig)
}

// Stop ends the process gracefully (SIGTERM, SIGKILL after 30 s) if it runs.
func (p *Proc) Stop() error {
	if p.Pid() == 0 {
		return nil
	}
	return p.Signal(syscall.SIGTERM, 30*time.Second)
}

// Kill SIGKILLs the process (a crash the parent causes, for fault
// injection) and waits until it is gone.
func (p *Proc) Kill() error {
	return p.Signal(syscall.SIGKILL, time.Minute)
}

// Crashes lists the exits the parent did not cause.
func (p *Proc) Crashes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

// WaitReady polls Ready until it succeeds, the process exits, or limit
// passes.
func (p *Proc) WaitReady(ctx context.Context, limit time.Duration) error {
	done := p.Done()
	if done == nil {
		return fmt.Errorf("%s: never started", p.Name)
	}
	if p.Ready == nil {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-done:
			cancel(fmt.Errorf("%s exited before it was ready%s", p.Name, p.logHint()))
		case <-ctx.Done():
		}
	}()
	if err := Poll(ctx, limit, p.Ready); err != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
			return c
		}
		return fmt.Errorf("%s: %w%s", p.Name, err, p.logHint())
	}
	return nil
}

func (p *Proc) logHint() string {
	if p.Log == "" {
		return ""
	}
	return " (log: " + p.Log + ")"
}
