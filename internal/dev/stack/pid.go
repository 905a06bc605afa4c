package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidfile names a daemon this package started: the file holds its pid, and
// pattern is a part of its command line, so that a recycled pid is never
// taken for it.
type pidfile struct {
	path     string
	patterns []string // any one of them
}

// pid returns the live process the file names, or an error saying why
// there is none.
func (p pidfile) pid() (int, error) {
	b, err := os.ReadFile(p.path)
	if err != nil {
		return 0, fmt.Errorf("no pidfile %s", p.path)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: bad pid %q", p.path, bytes.TrimSpace(b))
	}
	if !Alive(pid) {
		return 0, fmt.Errorf("pid %d (%s) is not running", pid, p.path)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d (%s) is not running", pid, p.path)
	}
	for _, pat := range p.patterns {
		if bytes.Contains(cmdline, []byte(pat)) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("pid %d (%s) is not %s", pid, p.path, strings.Join(p.patterns, " or "))
}

func (p pidfile) write(pid int) error {
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p.path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// removeIf removes the file if it still names pid.
func (p pidfile) removeIf(pid int) {
	if b, err := os.ReadFile(p.path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		os.Remove(p.path)
	}
}

// Alive reports whether pid is a live process. A zombie (exited, not yet
// reaped by its parent) is not.
func Alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// StopPid sends sig to pid and waits up to grace for it to exit, then
// SIGKILLs it and waits a little longer. It returns an error if the
// process is still there at the end, or if it needed the SIGKILL (the
// error then says so; the process is gone).
func StopPid(pid int, sig syscall.Signal, grace time.Duration) error {
	if pid <= 1 {
		return fmt.Errorf("refusing to signal pid %d", pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill -%d %d: %w", sig, pid, err)
	}
	if waitGone(pid, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10*time.Second) {
		return fmt.Errorf("pid %d still running after SIGKILL", pid)
	}
	return fmt.Errorf("pid %d did not exit within %s of signal %d; killed", pid, grace, sig)
}

func waitGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// lock holds an exclusive flock on dir/name.lock until the returned
// function is called, so that two processes never start or stop the same
// service at once. It waits up to ten minutes (a first Kafka start fetches
// its jars).
func lock(ctx context.Context, dir, name string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s: held by another process: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// locked runs f holding the lock on dir/name (see lock).
func locked[T any](ctx context.Context, dir, name string, f func() (T, error)) (T, error) {
	unlock, err := lock(ctx, dir, name)
	if err != nil {
		var zero T
		return zero, err
	}
	defer unlock()
	return f()
}

// daemon starts a service process detached from the caller (its own
// session, stdin from /dev/null, output appended to logPath), so that it
// outlives the command that started it, and records its pid. The process
// is reaped in the background while the caller lives; exited is closed
// when it exits.
func daemon(name, logPath string, pf pidfile, dir string, argv ...string) (pid int, exited <-chan struct{}, err error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return 0, nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := pf.write(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		return 0, nil, err
	}
	return cmd.Process.Pid, done, nil
}

// asRoot prefixes a command with sudo -n unless this process is root.
func asRoot(argv ...string) []string {
	if os.Geteuid() == 0 {
		return argv
	}
	return append([]string{"sudo", "-n"}, argv...)
}

// asUser runs a command as another OS user (e.g. postgres): directly when
// this process is that user, through runuser when it is root, else sudo.
func asUser(user string, argv ...string) []string {
	if u, err := osuser.Current(); err == nil && u.Username == user {
		return argv
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("runuser"); err == nil {
			return append([]string{"runuser", "-u", user, "--"}, argv...)
		}
	}
	return append([]string{"sudo", "-n", "-u", user}, argv...)
}

// command runs argv from dir with a time limit and returns its combined
// output; the error carries the output's tail.
func command(ctx context.Context, limit time.Duration, dir string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w%s", strings.Join(argv, " "), err, indentTail(string(out), 1500))
	}
	return string(out), nil
}

// indentTail is the last n bytes of s, each line indented, after a newline
// (or "" when s is blank).
func indentTail(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return "\n    " + strings.ReplaceAll(s, "\n", "\n    ")
}
