package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKafkaMode(t *testing.T) {
	for _, ok := range []string{"auto", "real", "embedded"} {
		if m, err := ParseKafkaMode(ok); err != nil || string(m) != ok {
			t.Errorf("ParseKafkaMode(%q) = %q, %v", ok, m, err)
		}
	}
	for _, bad := range []string{"", "none", "Real"} {
		if _, err := ParseKafkaMode(bad); err == nil {
			t.Errorf("ParseKafkaMode(%q) passed", bad)
		}
	}
}

func TestJavaMajor(t *testing.T) {
	for out, want := range map[string]int{
		`openjdk version "17.0.13" 2024-10-15`: 17,
		`openjdk version "21" 2023-09-19`:      21,
		`java version "1.8.0_402"`:             8,
		`bash: java: command not found`:        0,
	} {
		if got := javaMajor(out); got != want {
			t.Errorf("javaMajor(%q) = %d, want %d", out, got, want)
		}
	}
}

func TestLoggingDeps(t *testing.T) {
	got := loggingDeps([]string{"kafka_2.13-4.1.1.jar", "slf4j-api-1.7.36.jar", "log4j-api-2.24.3.jar"})
	want := []mavenDep{
		{"org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"},
		{"org.apache.logging.log4j", "log4j-core", "2.24.3"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("slf4j 1.x = %v, want %v", got, want)
	}
	got = loggingDeps([]string{"slf4j-api-2.0.17.jar"})
	if len(got) != 3 || got[0].Artifact != "log4j-slf4j2-impl" || got[0].Version != "2.24.3" {
		t.Errorf("slf4j 2.x, no log4j = %v", got)
	}
	if got := loggingDeps([]string{"slf4j-api-2.0.17.jar", "log4j-slf4j2-impl-2.25.0.jar", "log4j-core-2.25.0.jar", "log4j-api-2.25.0.jar"}); len(got) != 0 {
		t.Errorf("all present = %v", got)
	}
}

func TestKafkaConfigRendered(t *testing.T) {
	s, err := New(Config{KafkaAddr: "127.0.0.1:19092", State: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := s.Kafka()
	if err := k.writeConfig(); err != nil {
		t.Fatal(err)
	}
	props, err := os.ReadFile(filepath.Join(k.confDir(), "server.properties"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n",
		"controller.quorum.bootstrap.servers=127.0.0.1:19093\n",
		"log.dirs=" + filepath.Join(s.State, "kafka", "data") + "\n",
	} {
		if !strings.Contains(string(props), want) {
			t.Errorf("server.properties lacks %q", want)
		}
	}
	logCfg, err := os.ReadFile(filepath.Join(k.confDir(), "log4j2.properties"))
	if err != nil || !strings.Contains(string(logCfg), "appender.file.fileName = "+k.realLog()+"\n") {
		t.Errorf("log4j2.properties: %v\n%s", err, logCfg)
	}
	pom, err := k.render("pom.xml", map[string]any{"ArtifactID": "x", "Dependencies": []mavenDep{{"g", "a", "1"}}})
	if err != nil || !strings.Contains(string(pom), "<groupId>g</groupId>\n      <artifactId>a</artifactId>\n      <version>1</version>") {
		t.Errorf("pom: %v\n%s", err, pom)
	}
	if _, err := k.render("pom.xml", map[string]any{"ArtifactID": "x"}); err == nil {
		t.Error("a template value missing: want an error")
	}
	if _, err := k.render("nothing", nil); err == nil {
		t.Error("a missing template: want an error")
	}
}
