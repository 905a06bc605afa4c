package stack

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shProc is a Proc running a shell script.
func shProc(t *testing.T, script string) *Proc {
	t.Helper()
	p := &Proc{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, Log: filepath.Join(t.TempDir(), "sh.log")}
	t.Cleanup(func() {
		if p.Pid() != 0 {
			_ = p.Kill()
		}
	})
	return p
}

// waitLog waits until the log holds n lines of text.
func waitLog(t *testing.T, log, text string, n int) {
	t.Helper()
	if err := Poll(context.Background(), 10*time.Second, func(context.Context) error {
		if b, _ := os.ReadFile(log); strings.Count(string(b), text) < n {
			return errors.New("not yet in " + log + ": " + text)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

const loop = `while :; do sleep 0.05; done`

func TestProcStopIsNotACrash(t *testing.T) {
	p := shProc(t, `trap 'echo bye; exit 0' TERM; echo hello; `+loop)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("child's process group = %d, %v; want its own (%d)", pgid, err, pid)
	}
	if err := p.Start(); err == nil {
		t.Error("a second Start while running: want an error")
	}
	// Wait until the trap is set (the script printed hello), then stop.
	waitLog(t, p.Log, "hello", 1)
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	<-p.Done()
	if c := p.Crashes(); len(c) != 0 {
		t.Errorf("crashes after Stop: %v", c)
	}
	if p.Pid() != 0 || Alive(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
	if st := p.State(); st == nil || st.ExitCode() != 0 {
		t.Errorf("exit state %v, want 0", st)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop when not running: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM, time.Second); err == nil {
		t.Error("Signal when not running: want an error")
	}
	// A restart appends to the same log.
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p.Log, "hello", 2)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p.Log); strings.Count(string(b), "hello") != 2 || !strings.Contains(string(b), "bye") {
		t.Errorf("log after two runs: %q", b)
	}
	if c := p.Crashes(); len(c) != 0 {
		t.Errorf("Kill counted as a crash: %v", c)
	}
}

func TestProcSignalEscalatesToKill(t *testing.T) {
	p := shProc(t, `trap '' TERM; echo ready; `+loop)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p.Log, "ready", 1)
	pid := p.Pid()
	err := p.Signal(syscall.SIGTERM, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Signal to a process ignoring it: %v, want 'killed'", err)
	}
	if Alive(pid) {
		t.Errorf("pid %d alive after the escalation", pid)
	}
}

func TestProcCrashIsRecorded(t *testing.T) {
	p := shProc(t, `exit 3`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if c := p.Crashes(); len(c) != 1 || !strings.Contains(c[0], "exit status 3") {
		t.Errorf("crashes = %v, want one with exit status 3", c)
	}
	if p.State().ExitCode() != 3 {
		t.Errorf("exit code %d", p.State().ExitCode())
	}
}

func TestProcStartFails(t *testing.T) {
	p := &Proc{Name: "nothing", Path: filepath.Join(t.TempDir(), "missing")}
	if err := p.Start(); err == nil {
		t.Error("Start of a missing binary: want an error")
	}
	p = &Proc{Name: "nolog", Path: "/bin/true", Log: filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")}
	if err := p.Start(); err == nil {
		t.Error("Start with an unwritable log: want an error")
	}
}

func TestProcWaitReady(t *testing.T) {
	ctx := context.Background()
	never := &Proc{Name: "never"}
	if err := never.WaitReady(ctx, time.Second); err == nil {
		t.Error("WaitReady before Start: want an error")
	}

	// Exits before it is ready: the error says so without waiting the limit out.
	p := shProc(t, `exit 0`)
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p.Ready = TCPReady(addr)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, time.Hour); err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Errorf("WaitReady of an exited process: %v", err)
	}

	// Ready once something listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	q := shProc(t, loop)
	q.Ready = TCPReady(ln.Addr().String())
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	if err := q.WaitReady(ctx, 10*time.Second); err != nil {
		t.Errorf("WaitReady with a listener: %v", err)
	}

	// Not ready within the limit.
	q.Ready = func(context.Context) error { return errors.New("not yet") }
	if err := q.WaitReady(ctx, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not yet") {
		t.Errorf("WaitReady never ready: %v", err)
	}
}

func TestProbesRefuseOtherHosts(t *testing.T) {
	ctx := context.Background()
	if err := TCPReady("10.1.2.3:80")(ctx); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Errorf("TCPReady to 10.1.2.3: %v", err)
	}
	if err := HTTPReady("http://10.1.2.3/")(ctx); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("HTTPReady to 10.1.2.3: %v", err)
	}
}
