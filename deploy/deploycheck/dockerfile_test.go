package deploycheck

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func parseDockerfile(t testing.TB, rel string) []instruction {
	t.Helper()
	var out []instruction
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, rel)))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// goDirective is the go version go.mod asks for (e.g. "1.26").
func goDirective(t testing.TB) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

// TestDockerfile checks deploy/Dockerfile against the repository: the Go
// builder matches go.mod, what it copies exists, it builds both binaries
// statically, and the final image runs as an unprivileged user.
func TestDockerfile(t *testing.T) {
	const rel = "deploy/Dockerfile"
	ins := parseDockerfile(t, rel)
	var p problems
	var stages []string // FROM images
	var build, user string
	var copies []instruction
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			stages = append(stages, strings.Fields(in.args)[0])
			user = "" // USER is per stage
		case "COPY", "ADD":
			copies = append(copies, in)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		case "USER":
			user = in.args
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%s: want a multi-stage build, got stages %v", rel, stages)
	}
	if want := "golang:" + goDirective(t); !strings.HasPrefix(stages[0], want) {
		p.add("builder image %s, want %s (go.mod's go directive)", stages[0], want)
	}
	if strings.HasPrefix(stages[len(stages)-1], "golang") {
		p.add("final image %s carries the Go toolchain", stages[len(stages)-1])
	}
	if u := strings.Split(user, ":")[0]; u == "" || u == "root" || u == "0" {
		p.add("final stage runs as %q, want an unprivileged USER", user)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") {
		p.add("go build without CGO_ENABLED=0: %q", build)
	}
	for _, pkg := range []string{"./cmd/api", "./cmd/consumer"} {
		if !strings.Contains(build, pkg) {
			p.add("go build does not build %s", pkg)
		} else if !exists(path(strings.TrimPrefix(pkg, "./"))) {
			p.add("go build builds %s, which does not exist", pkg)
		}
	}
	for _, c := range copies {
		if strings.Contains(c.args, "--from=") {
			continue
		}
		f := strings.Fields(c.args)
		var srcs []string
		for _, a := range f[:len(f)-1] {
			if !strings.HasPrefix(a, "--") {
				srcs = append(srcs, a)
			}
		}
		for _, s := range srcs {
			if !exists(path(s)) { // the build context is the repository root (compose.yaml)
				p.add("line %d: COPY %s: no such file in the build context", c.line, s)
			}
		}
	}
	p.report(t, rel)
}

// TestDockerignore checks that .dockerignore keeps local state out of the
// build context but keeps every package the binaries are built from.
func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ignored := func(rel string) bool {
		ign := false
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			pat = strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/")
			// A pattern matches the path or any parent of it.
			for p := rel; p != "." && p != "/"; p = filepath.Dir(p) {
				ok, _ := filepath.Match(pat, p)
				if !ok && strings.HasPrefix(pat, "**/") {
					ok, _ = filepath.Match(strings.TrimPrefix(pat, "**/"), filepath.Base(p))
				}
				if ok {
					ign = !neg
					break
				}
			}
		}
		return ign
	}
	var p problems
	for _, must := range []string{".git", ".local", ".cache", "bin"} {
		if !ignored(must) {
			p.add("%s is sent to the docker build context", must)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum"} {
		if ignored(keep) {
			p.add("%s is ignored, the build needs it", keep)
		}
	}
	// Every Go and embedded file of the repository's packages that the
	// binaries are built from must reach the build context.
	list := exec.Command(goTool(), "list", "-deps", "-f",
		`{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/api", "./cmd/consumer")
	list.Dir = root
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	n := 0
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		n++
		if ignored(filepath.ToSlash(rel)) {
			p.add("%s is ignored, but ./cmd/api or ./cmd/consumer is built from it", rel)
		}
	}
	if n == 0 {
		p.add("go list found no repository files behind ./cmd/api and ./cmd/consumer")
	}
	p.report(t, ".dockerignore")
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
	binOut  []byte
)

// binaries builds cmd/api and cmd/consumer the way deploy/Dockerfile does
// (CGO_ENABLED=0, -trimpath) into a directory shared by the tests, and
// returns it.
func binaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "deploycheck-bin-")
		if binErr != nil {
			return
		}
		cmd := exec.Command(goTool(), "build", "-trimpath", "-o", binDir+string(filepath.Separator), "./cmd/api", "./cmd/consumer")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		binOut, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/api ./cmd/consumer: %v\n%s", binErr, binOut)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestStaticBinaries builds both binaries as the image does and checks they
// are static (no ELF interpreter, no shared libraries), so they run on any
// base image.
func TestStaticBinaries(t *testing.T) {
	testenv.Need(t, "CGO_ENABLED=0 builds of cmd/api and cmd/consumer (slow)")
	if runtime.GOOS != "linux" {
		t.Fatalf("the image is linux; run this check on linux (GOOS=%s)", runtime.GOOS)
	}
	start := time.Now()
	dir := binaries(t)
	t.Logf("built in %v", time.Since(start).Round(time.Millisecond))
	for _, b := range []string{"api", "consumer"} {
		f, err := elf.Open(filepath.Join(dir, b))
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s: has an ELF interpreter: not a static binary", b)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: links shared libraries %v", b, libs)
		}
		f.Close()
	}
}

// goTool is the go command: the one on PATH, else the one in GOROOT (go
// test puts it there for the tests it runs).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}
