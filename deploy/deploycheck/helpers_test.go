package deploycheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/internal/dev/testenv"
	"go.yaml.in/yaml/v3"
)

// root is the repository root (the directory holding go.mod).
var root = func() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("deploycheck: no go.mod above the working directory")
		}
		dir = parent
	}
}()

// path is a repository-relative path made absolute.
func path(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

// readFile returns a repository file's contents.
func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(path(rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return b
}

// readYAML decodes a repository YAML file into v, rejecting unknown fields
// when v is a struct.
func readYAML(t testing.TB, rel string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, rel)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// toolHint says how to get the tools these checks run.
const toolHint = "install the deployment check tools with `bash deploy/local/install.sh checks` " +
	"(apt-get install -y --no-install-recommends prometheus haproxy)"

// requireTool returns the path of a command the checks need (on PATH or in
// an sbin directory). Under -short the test skips; otherwise a tool that is
// not installed fails it, never skips it.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	testenv.Need(t, name)
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} { // haproxy lives in sbin, often off a user's PATH
		if p := filepath.Join(dir, name); exists(p) {
			return p
		}
	}
	t.Fatalf("%s is not on PATH: %s", name, toolHint)
	return ""
}

// run runs a command in the repository root and returns its combined output,
// failing the test when it does not exit 0.
func run(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := stack.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// exists reports whether a file or directory exists.
func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// problems collects failures so a check reports all of them at once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) report(t testing.TB, what string) {
	t.Helper()
	if len(p) > 0 {
		sort.Strings(p)
		t.Errorf("%s: %d problem(s):\n  %s", what, len(p), strings.Join(p, "\n  "))
	}
}

// startProc starts p and, when the test ends, stops it with SIGTERM,
// killing it if it has not exited within grace.
func startProc(t testing.TB, p *stack.Proc, grace time.Duration) {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.Pid() != 0 {
			_ = p.Signal(syscall.SIGTERM, grace)
		}
	})
}
