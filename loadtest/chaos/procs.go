package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is an api or consumer process the runner starts, kills and
// restarts. Its output goes to one log file across restarts. An exit the
// runner did not cause is a crash.
type Proc struct {
	Name  string
	Bin   string
	Env   []string
	Log   string // file the output is appended to
	Probe string // URL that answers 200 when the process is ready

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exited
	expect  bool          // the runner is ending the current process
	crashes []string
	started time.Time
}

// Start starts the process (it must not be running).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Bin)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a Ctrl-C at the terminal reaches the runner
	// only (which then stops it); killed with the runner if the runner dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expect, p.started = cmd, done, false, time.Now()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.expect {
			p.crashes = append(p.crashes, fmt.Sprintf("%s (pid %d, up %s): %v", p.Name, cmd.Process.Pid,
				time.Since(p.started).Round(time.Second), err))
		}
		if p.cmd == cmd {
			p.cmd = nil
		}
		close(done)
	}()
	return nil
}

// Pid is the current process id, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the current process and waits up to wait for it to
// exit, SIGKILLing it then. The exit is not a crash.
func (p *Proc) Signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: not running", p.Name)
	}
	p.expect = true
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(wait):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("%s (pid %d) did not exit within %s of signal %d; killed", p.Name, cmd.Process.Pid, wait, sig)
}

// Stop ends the process gracefully (SIGTERM, SIGKILL after 30 s), if it runs.
func (p *Proc) Stop() error {
	if p.Pid() == 0 {
		return nil
	}
	return p.Signal(syscall.SIGTERM, 30*time.Second)
}

// Crashes lists the exits the runner did not cause.
func (p *Proc) Crashes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.crashes...)
}

// WaitReady polls Probe until it answers 200, the process exits, or limit passes.
func (p *Proc) WaitReady(ctx context.Context, limit time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s: never started", p.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		if last = probe(ctx, p.Probe); last == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready (log: %s)", p.Name, p.Log)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %v", p.Name, limit, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// probe GETs url and wants 200.
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// portFree reports an error if something listens on addr.
func portFree(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%s is in use by another process", addr)
}
