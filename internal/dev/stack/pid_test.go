package stack

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPidfile(t *testing.T) {
	dir := t.TempDir()
	self, _ := os.ReadFile("/proc/self/cmdline")
	exe := filepath.Base(strings.SplitN(string(self), "\x00", 2)[0])
	pf := pidfile{path: filepath.Join(dir, "sub", "x.pid"), patterns: []string{"no-such-name", exe}}
	if _, err := pf.pid(); err == nil {
		t.Error("missing pidfile: want an error")
	}
	if err := pf.write(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if pid, err := pf.pid(); err != nil || pid != os.Getpid() {
		t.Errorf("pid() = %d, %v; want %d", pid, err, os.Getpid())
	}
	other := pidfile{path: pf.path, patterns: []string{"redis-server"}}
	if _, err := other.pid(); err == nil || !strings.Contains(err.Error(), "is not redis-server") {
		t.Errorf("a live pid that is not the service: %v", err)
	}
	pf.removeIf(os.Getpid() + 1)
	if _, err := os.Stat(pf.path); err != nil {
		t.Error("removeIf removed a file naming another pid")
	}
	pf.removeIf(os.Getpid())
	if _, err := os.Stat(pf.path); err == nil {
		t.Error("removeIf kept a file naming the pid")
	}
	for _, bad := range []string{"", "x", "1", "-5"} {
		os.WriteFile(pf.path, []byte(bad), 0o644)
		if _, err := pf.pid(); err == nil {
			t.Errorf("pidfile %q: want an error", bad)
		}
	}
}

func TestAliveAndStopPid(t *testing.T) {
	if !Alive(os.Getpid()) || Alive(0) || Alive(-1) {
		t.Error("Alive of self / 0 / -1")
	}
	// A zombie (exited, not reaped) is not alive.
	z := exec.Command("/bin/sh", "-c", "exit 0")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	if err := Poll(context.Background(), 10*time.Second, func(context.Context) error {
		if Alive(z.Process.Pid) {
			return os.ErrExist
		}
		return nil
	}); err != nil {
		t.Errorf("an exited, unreaped child is alive: %v", err)
	}
	z.Wait()

	if err := StopPid(1, syscall.SIGTERM, time.Second); err == nil {
		t.Error("StopPid(1): want a refusal")
	}
	// A process ignoring SIGTERM is killed, and the error says so.
	c := exec.Command("/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
	out, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go c.Wait() // reap, as the parent of a daemon does
	buf := make([]byte, 6)
	out.Read(buf)
	err := StopPid(c.Process.Pid, syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("StopPid of a process ignoring SIGTERM: %v", err)
	}
	if Alive(c.Process.Pid) {
		t.Error("still alive")
	}
	// A gone process is not an error.
	if err := StopPid(c.Process.Pid, syscall.SIGTERM, time.Second); err != nil && !strings.Contains(err.Error(), strconv.Itoa(c.Process.Pid)) {
		t.Errorf("StopPid of a gone process: %v", err)
	}
}

func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lock(context.Background(), dir, "redis")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, dir, "redis"); err == nil {
		t.Fatal("a second lock while held: want an error")
	}
	other, err := lock(context.Background(), dir, "kafka")
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	other()
	unlock()
	again, err := lock(context.Background(), dir, "redis")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}

func TestCommandError(t *testing.T) {
	_, err := command(context.Background(), 10*time.Second, "/", "/bin/sh", "-c", "echo boom >&2; exit 4")
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("command error = %v, want the output and status", err)
	}
	if got := asRoot("x"); os.Geteuid() == 0 && len(got) != 1 || os.Geteuid() != 0 && got[0] != "sudo" {
		t.Errorf("asRoot = %v", got)
	}
}
