package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaMode says which broker Kafka.Start runs when none answers.
type KafkaMode string

const (
	// KafkaAuto runs real Apache Kafka when it can be fetched and started,
	// else the embedded broker.
	KafkaAuto KafkaMode = "auto"
	// KafkaReal runs Apache Kafka, single-node KRaft, from its Maven
	// Central jars (Java 17+ and Maven needed).
	KafkaReal KafkaMode = "real"
	// KafkaEmbedded runs franz-go's kfake broker (cmd/devkafka serve).
	KafkaEmbedded KafkaMode = "embedded"
)

// The kinds of broker Kafka.Probe tells apart.
const (
	KindReal     = "real"
	KindEmbedded = "embedded"
)

// ParseKafkaMode accepts real, embedded or auto.
func ParseKafkaMode(s string) (KafkaMode, error) {
	switch m := KafkaMode(s); m {
	case KafkaAuto, KafkaReal, KafkaEmbedded:
		return m, nil
	}
	return "", fmt.Errorf("kafka mode %q: want real, embedded or auto", s)
}

// scalaVersion is the Scala build of the broker jar (kafka_2.13).
const scalaVersion = "2.13"

// Kafka is the local broker: a real Apache Kafka (KRaft, broker and
// controller in one JVM, controller on the next port) or the embedded
// kfake broker, with state, logs and config in State/kafka and the jars in
// Cache/kafka/lib.
type Kafka struct {
	s           *Stack
	addr        string
	ctrlPort    int
	mode        KafkaMode
	requireReal bool
	version     string
	heap        []string
	dir         string
	restore     string // the kind down() took away, for the next start
}

func newKafka(s *Stack, cfg Config) *Kafka {
	_, port, _ := net.SplitHostPort(cfg.KafkaAddr)
	n, _ := strconv.Atoi(port)
	return &Kafka{
		s: s, addr: cfg.KafkaAddr, ctrlPort: n + 1, mode: cfg.KafkaMode, requireReal: cfg.KafkaRequireReal,
		version: cfg.KafkaVersion, heap: strings.Fields(cfg.KafkaHeap), dir: filepath.Join(s.State, "kafka"),
	}
}

func (k *Kafka) pidfile() pidfile {
	return pidfile{path: filepath.Join(k.dir, "kafka.pid"), patterns: []string{"kafka.Kafka", "devkafka"}}
}
func (k *Kafka) kindFile() string    { return filepath.Join(k.dir, "kind") }
func (k *Kafka) versionFile() string { return filepath.Join(k.dir, "version") }
func (k *Kafka) realLog() string     { return filepath.Join(k.dir, "kafka.log") }
func (k *Kafka) kfakeLog() string    { return filepath.Join(k.dir, "kfake.log") }
func (k *Kafka) confDir() string     { return filepath.Join(k.dir, "config") }
func (k *Kafka) libDir() string      { return filepath.Join(k.s.Cache, "kafka", "lib") }
func (k *Kafka) devkafka() string    { return filepath.Join(k.s.State, "bin", "devkafka") }

// Name is "kafka".
func (k *Kafka) Name() string { return "kafka" }

// Addr is the broker's listener.
func (k *Kafka) Addr() string { return k.addr }

// Check asks the broker for metadata (see Probe).
func (k *Kafka) Check(ctx context.Context) error {
	_, _, err := k.Probe(ctx)
	return err
}

// Probe asks the broker at Addr for its metadata, listing the topics, with
// a franz-go client, and tells its kind (real or embedded, by the cluster
// id kfake reports) and, for a real broker, the Kafka release its API
// versions match (e.g. "v4.1").
func (k *Kafka) Probe(ctx context.Context) (kind, version string, err error) {
	if err := CheckAddr(k.addr); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.DialTimeout(2*time.Second), kgo.RequestRetries(1))
	if err != nil {
		return "", "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx)
	if err != nil {
		return "", "", fmt.Errorf("kafka %s: %w", k.addr, err)
	}
	if len(md.Brokers) == 0 {
		return "", "", fmt.Errorf("kafka %s: no brokers in metadata", k.addr)
	}
	if strings.HasPrefix(md.Cluster, "kfake") {
		return KindEmbedded, "", nil
	}
	version = "unknown"
	if vs, err := adm.ApiVersions(ctx); err == nil {
		for _, v := range vs.Sorted() {
			if v.Err == nil {
				version = v.VersionGuess()
				break
			}
		}
	}
	return KindReal, version, nil
}

// Start starts a broker of the configured mode unless one already answers
// at Addr. A running broker is reused whatever its kind, except that an
// embedded one this package started is replaced when a real one is
// required (mode real or KafkaRequireReal).
func (k *Kafka) Start(ctx context.Context) error { return k.s.startLocked(ctx, k) }

func (k *Kafka) start(ctx context.Context) error {
	mode := k.mode
	if k.requireReal {
		if mode == KafkaEmbedded {
			return errors.New("KAFKA_REQUIRE_REAL=1 forbids the embedded broker")
		}
		mode = KafkaReal
	}
	if k.restore != "" {
		mode, k.restore = KafkaMode(k.restore), ""
	}
	if pid, err := k.pidfile().pid(); err == nil && TCPReady(k.addr)(ctx) != nil {
		// Ours, alive but not listening yet (still starting): wait for it
		// rather than start a second broker on its port.
		k.s.logf("KAFKA: pid %d is running but not answering at %s yet; waiting", pid, k.addr)
		if err := Poll(ctx, 2*time.Minute, TCPReady(k.addr)); err != nil {
			return fmt.Errorf("kafka pid %d: %w", pid, err)
		}
	}
	if TCPReady(k.addr)(ctx) == nil {
		var kind, version string
		err := Poll(ctx, 90*time.Second, func(ctx context.Context) (err error) {
			kind, version, err = k.Probe(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("something listens on %s but does not answer as a Kafka broker: %w", k.addr, err)
		}
		pid, notOurs := k.pidfile().pid()
		if kind == KindEmbedded && mode == KafkaReal {
			if notOurs != nil {
				return fmt.Errorf("an embedded (kfake) broker not started here holds %s; a real broker is required", k.addr)
			}
			k.s.logf("KAFKA: replacing the embedded broker started earlier (pid %d) by a real one", pid)
			if err := StopPid(pid, syscall.SIGTERM, 30*time.Second); err != nil {
				return err
			}
			k.pidfile().removeIf(pid)
		} else {
			if notOurs == nil {
				k.s.logf("KAFKA: already running at %s (%s, started here, pid %d)", k.addr, kind, pid)
			} else {
				k.s.logf("KAFKA: already answering at %s (%s, not started here)", k.addr, kind)
				if kind == KindReal {
					_ = os.WriteFile(k.versionFile(), []byte(version+" (by API versions; not started here)\n"), 0o644)
				}
			}
			return k.announce(kind)
		}
	}
	os.Remove(k.kindFile())
	switch mode {
	case KafkaEmbedded:
		return k.startEmbedded(ctx)
	case KafkaReal:
		if err := k.startReal(ctx); err != nil {
			return fmt.Errorf("could not start a real Apache Kafka broker (no fallback): %w", err)
		}
		return nil
	default:
		err := k.startReal(ctx)
		if err == nil {
			return nil
		}
		k.s.logf("WARNING: %v", err)
		k.s.logf("WARNING: falling back to the embedded broker (KAFKA_REQUIRE_REAL=1 fails instead)")
		return k.startEmbedded(ctx)
	}
}

func (k *Kafka) announce(kind string) error {
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(k.kindFile(), []byte(kind+"\n"), 0o644); err != nil {
		return err
	}
	k.s.logf("KAFKA: %s (%s) at %s", k.Describe(kind), kind, k.addr)
	return nil
}

// Describe names a broker of the kind: "Apache Kafka 4.1.1", "kfake".
func (k *Kafka) Describe(kind string) string {
	if kind == KindEmbedded {
		return "kfake"
	}
	v := "4.x"
	if b, err := os.ReadFile(k.versionFile()); err == nil {
		v = strings.TrimSpace(string(b))
	}
	return "Apache Kafka " + v
}

// waitStarted waits until the broker answers, the process exits, or limit
// passes; logPath and mark (its size before the start) say what to show.
func (k *Kafka) waitStarted(ctx context.Context, limit time.Duration, pid int, exited <-chan struct{}, logPath string, mark int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-exited:
			cancel(errors.New("the broker exited during start-up"))
		case <-ctx.Done():
		}
	}()
	err := Poll(ctx, limit, func(ctx context.Context) error { _, _, err := k.Probe(ctx); return err })
	if err == nil {
		return nil
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		err = c
	} else {
		_ = StopPid(pid, syscall.SIGTERM, 30*time.Second)
	}
	k.pidfile().removeIf(pid)
	return fmt.Errorf("%w (log: %s)%s", err, logPath, indentTail(logSince(logPath, mark), 2500))
}

// logSince is what a log got after offset mark: its error lines, then its
// last lines.
func logSince(path string, mark int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	errLine := regexp.MustCompile(` (ERROR|FATAL) |^Caused by|^[A-Za-z_.$]+(Error|Exception)`)
	var errs []string
	for _, l := range lines {
		if errLine.MatchString(l) {
			errs = append(errs, l)
		}
	}
	errs = errs[max(0, len(errs)-8):]
	return strings.Join(append(append(errs, "..."), lines[max(0, len(lines)-5):]...), "\n")
}

func fileSize(path string) int64 {
	if fi, err := os.Stat(path); err == nil {
		return fi.Size()
	}
	return 0
}

// startEmbedded builds cmd/devkafka and runs `devkafka serve` detached.
func (k *Kafka) startEmbedded(ctx context.Context) error {
	if _, err := build(ctx, k.s.Root, filepath.Dir(k.devkafka()), "devkafka"); err != nil {
		return err
	}
	data := filepath.Join(k.dir, "kfake")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	k.s.logf("KAFKA: starting the embedded kfake broker on %s ...", k.addr)
	mark := fileSize(k.kfakeLog())
	pid, exited, err := daemon("devkafka", k.kfakeLog(), k.pidfile(), k.s.Root,
		k.devkafka(), "serve", "-addr", k.addr, "-partitions", "6", "-data", data)
	if err != nil {
		return err
	}
	if err := k.waitStarted(ctx, 30*time.Second, pid, exited, k.kfakeLog(), mark); err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	return k.announce(KindEmbedded)
}

// startReal fetches the jars (once), renders the config, formats the KRaft
// storage (once) and runs the broker detached.
func (k *Kafka) startReal(ctx context.Context) error {
	if err := javaAndMaven(ctx); err != nil {
		return err
	}
	if err := k.fetchJars(ctx); err != nil {
		return fmt.Errorf("could not fetch the Apache Kafka %s jars with Maven: %w", k.version, err)
	}
	if err := k.writeConfig(); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(k.addr)
	ctrl := net.JoinHostPort(host, strconv.Itoa(k.ctrlPort))
	if err := PortFree(ctrl); err != nil {
		return fmt.Errorf("the KRaft controller listener: %w", err)
	}
	props := filepath.Join(k.confDir(), "server.properties")
	mark := fileSize(k.realLog())
	data := filepath.Join(k.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "meta.properties")); err != nil {
		out, err := command(ctx, 2*time.Minute, k.dir, k.java("kafka.tools.StorageTool", "random-uuid")...)
		if err != nil {
			return err
		}
		lines := strings.Fields(out)
		if len(lines) == 0 {
			return errors.New("kafka-storage random-uuid printed nothing")
		}
		id := lines[len(lines)-1]
		k.s.logf("KAFKA: formatting KRaft storage in %s (cluster id %s) ...", data, id)
		if _, err := command(ctx, 2*time.Minute, k.dir, k.java("kafka.tools.StorageTool", "format", "--standalone", "-t", id, "-c", props)...); err != nil {
			return fmt.Errorf("kafka-storage format: %w", err)
		}
	}
	k.s.logf("KAFKA: starting Apache Kafka %s on %s (controller %s) ...", k.version, k.addr, ctrl)
	t0 := time.Now()
	pid, exited, err := daemon("kafka", k.realLog(), k.pidfile(), k.dir, k.java("kafka.Kafka", props)...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(k.versionFile(), []byte(k.version+"\n"), 0o644); err != nil {
		return err
	}
	if err := k.waitStarted(ctx, 120*time.Second, pid, exited, k.realLog(), mark); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	k.s.logf("KAFKA: ready after %s; pid %d, data %s, log %s", time.Since(t0).Round(100*time.Millisecond), pid, data, k.realLog())
	return k.announce(KindReal)
}

// java is the command line that runs a class of the broker's jars.
func (k *Kafka) java(class string, args ...string) []string {
	argv := append([]string{"java"}, k.heap...)
	argv = append(argv, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile="+filepath.Join(k.confDir(), "log4j2.properties"),
		"-Dkafka.logs.dir="+k.dir, "-cp", filepath.Join(k.libDir(), "*"), class)
	return append(argv, args...)
}

var javaVersion = regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`)

// javaAndMaven checks that Java 17+ and mvn are installed.
func javaAndMaven(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "java", "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("java not found (bash deploy/local/install.sh installs it): %w", err)
	}
	if major := javaMajor(string(out)); major < 17 {
		return fmt.Errorf("java 17+ is needed for Apache Kafka 4, found %q", strings.SplitN(string(out), "\n", 2)[0])
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return errors.New("mvn not found: Maven fetches the Kafka jars (bash deploy/local/install.sh installs it)")
	}
	return nil
}

// javaMajor reads the major version from `java -version` output (0 when
// it finds none): "17.0.2" is 17, "1.8.0" is 8.
func javaMajor(out string) int {
	m := javaVersion.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	major, _ := strconv.Atoi(m[1])
	if major == 1 && m[2] != "" {
		major, _ = strconv.Atoi(m[2])
	}
	return major
}

// kafkaTemplate renders deploy/local/kafka/NAME.tmpl with data.
func (k *Kafka) render(name string, data any) ([]byte, error) {
	path := filepath.Join(k.s.Root, "deploy", "local", "kafka", name+".tmpl")
	t, err := template.New(filepath.Base(path)).Option("missingkey=error").ParseFiles(path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (k *Kafka) writeConfig() error {
	host, port, _ := net.SplitHostPort(k.addr)
	data := map[string]any{
		"Host": host, "Port": port, "ControllerPort": k.ctrlPort,
		"DataDir": filepath.Join(k.dir, "data"), "LogFile": k.realLog(),
	}
	if err := os.MkdirAll(k.confDir(), 0o755); err != nil {
		return err
	}
	for _, name := range []string{"server.properties", "log4j2.properties"} {
		b, err := k.render(name, data)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(k.confDir(), name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mavenDep is a dependency of a rendered pom.
type mavenDep struct{ Group, Artifact, Version string }

// fetchJars resolves kafka_2.13 and its runtime dependencies, plus the
// log4j2 binding matching the slf4j and log4j versions that release uses,
// once, into Cache/kafka/lib.
func (k *Kafka) fetchJars(ctx context.Context) error {
	lib := k.libDir()
	stamp := filepath.Join(lib, ".kafka-"+k.version)
	if _, err := os.Stat(stamp); err == nil {
		return nil
	}
	work := filepath.Join(k.s.Cache, "kafka", "fetch")
	tmp := filepath.Join(k.s.Cache, "kafka", "lib.tmp")
	for _, d := range []string{work, tmp} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	k.s.logf("KAFKA: fetching the Apache Kafka %s jars with Maven into %s (once) ...", k.version, lib)
	t0 := time.Now()
	broker := []mavenDep{{"org.apache.kafka", "kafka_" + scalaVersion, k.version}}
	if err := k.mvnCopy(ctx, work, "kafka-broker", broker, tmp); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(tmp, "kafka_"+scalaVersion+"-"+k.version+".jar")); err != nil {
		return fmt.Errorf("maven copied no kafka_%s-%s.jar", scalaVersion, k.version)
	}
	jars, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	var names []string
	for _, j := range jars {
		names = append(names, j.Name())
	}
	logging := loggingDeps(names)
	if len(logging) > 0 {
		if err := k.mvnCopy(ctx, work, "kafka-logging", logging, tmp, "-DexcludeTransitive=true"); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(lib); err != nil {
		return err
	}
	if err := os.Rename(tmp, lib); err != nil {
		return err
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		return err
	}
	k.s.logf("KAFKA: fetched %d jars in %s", len(names)+len(logging), time.Since(t0).Round(time.Second))
	return nil
}

var jarVersion = regexp.MustCompile(`^(slf4j-api|log4j-api)-([0-9.]+)\.jar$`)

// loggingDeps is what the broker's jars lack to log through log4j2: the
// binding that matches their slf4j API (1.x: log4j-slf4j-impl, 2.x:
// log4j-slf4j2-impl) and log4j-core and log4j-api, all of the log4j-api
// version they bring (2.24.3 when none).
func loggingDeps(jars []string) []mavenDep {
	slf4j, log4j := "", "2.24.3"
	for _, j := range jars {
		if m := jarVersion.FindStringSubmatch(j); m != nil {
			if m[1] == "slf4j-api" {
				slf4j = m[2]
			} else {
				log4j = m[2]
			}
		}
	}
	binding := "log4j-slf4j2-impl"
	if strings.HasPrefix(slf4j, "1.") {
		binding = "log4j-slf4j-impl"
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(jars, func(j string) bool { return strings.HasPrefix(j, prefix) })
	}
	var deps []mavenDep
	if !has("log4j-slf4j-impl-") && !has("log4j-slf4j2-impl-") {
		deps = append(deps, mavenDep{"org.apache.logging.log4j", binding, log4j})
	}
	for _, a := range []string{"log4j-core", "log4j-api"} {
		if !has(a + "-") {
			deps = append(deps, mavenDep{"org.apache.logging.log4j", a, log4j})
		}
	}
	return deps
}

// mvnCopy renders a pom with deps into work and has Maven copy the runtime
// jars into out.
func (k *Kafka) mvnCopy(ctx context.Context, work, artifact string, deps []mavenDep, out string, extra ...string) error {
	pom, err := k.render("pom.xml", map[string]any{"ArtifactID": artifact, "Dependencies": deps})
	if err != nil {
		return err
	}
	path := filepath.Join(work, artifact+".xml")
	if err := os.WriteFile(path, pom, 0o644); err != nil {
		return err
	}
	argv := append([]string{"mvn", "-B", "-q", "-f", path, "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory=" + out}, extra...)
	_, err = command(ctx, 10*time.Minute, work, argv...)
	return err
}

// Stop stops the broker this package started (SIGTERM, a controlled
// shutdown; SIGKILL after 60 s).
func (k *Kafka) Stop(ctx context.Context) (bool, error) {
	return locked(ctx, k.s.State, k.Name(), func() (bool, error) {
		pid, err := k.pidfile().pid()
		if err != nil {
			return false, nil
		}
		k.s.logf("stopping Kafka (%s, pid %d) ...", k.recordedKind(), pid)
		err = StopPid(pid, syscall.SIGTERM, 60*time.Second)
		k.pidfile().removeIf(pid)
		os.Remove(k.kindFile())
		return true, err
	})
}

// recordedKind is the kind the last start found or started ("" if none).
func (k *Kafka) recordedKind() string {
	b, _ := os.ReadFile(k.kindFile())
	return strings.TrimSpace(string(b))
}

// down stops the broker this package started, with sig (SIGKILL after 60
// s), and remembers its kind for the next start.
func (k *Kafka) down(_ context.Context, sig syscall.Signal) error {
	pid, err := k.pidfile().pid()
	if err != nil {
		return fmt.Errorf("not started by this package: %w", err)
	}
	k.restore = k.recordedKind()
	return StopPid(pid, sig, 60*time.Second)
}

// Status probes the broker.
func (k *Kafka) Status(ctx context.Context) Status {
	st := Status{Name: k.Name(), Addr: k.addr}
	kind, _, err := k.Probe(ctx)
	st.Up, st.Err = err == nil, err
	if pid, err := k.pidfile().pid(); err == nil {
		st.Owned, st.Pid = true, pid
		st.Stop = fmt.Sprintf("kill %d", pid)
	}
	if st.Up {
		st.What = k.Describe(kind) + " (" + kind + ")"
	}
	st.Log = k.realLog()
	if kind == KindEmbedded {
		st.Log = k.kfakeLog()
	}
	return st
}
