package loadtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// scenarios are the k6 scripts users run; lib.js is imported by them.
var scenarios = []string{"rain.js", "sellout.js", "duplicates.js", "soak.js"}

// k6Stubs stand in for k6's built-in modules so node can evaluate a script's
// init context. They export the names k6 itself exports, so a misspelled
// import fails to link here as it would in k6.
var k6Stubs = map[string]string{
	"k6": `export function check() { return true; }
export function fail(msg) { throw new Error(msg); }
export function group(name, fn) { return fn(); }
export function sleep() {}
export function randomSeed() {}`,
	"k6/http": `function none() {}
export const get = none, post = none, put = none, patch = none, del = none, head = none,
  options = none, request = none, batch = none, asyncRequest = none, file = none,
  cookieJar = none, setResponseCallback = none, url = none;
export function expectedStatuses() { return {}; }
export class CookieJar {}
export default { get, post, put, patch, del, head, options, request, batch, asyncRequest,
  file, cookieJar, setResponseCallback, url, expectedStatuses, CookieJar };`,
	"k6/metrics": `class Metric { constructor(name) { this.name = name; } add() {} }
export class Counter extends Metric {}
export class Gauge extends Metric {}
export class Rate extends Metric {}
export class Trend extends Metric {}`,
	"k6/execution": `export default { scenario: { name: '', iterationInTest: 0, iterationInInstance: 0 },
  vu: { idInTest: 0, idInInstance: 0, iterationInScenario: 0, iterationInInstance: 0 },
  instance: {}, test: { abort() {} } };`,
}

// hooks resolves k6's modules to the stubs (node's module customization hooks).
const hooks = `const stubs = %s;
export async function resolve(specifier, context, next) {
  if (Object.hasOwn(stubs, specifier)) {
    return { url: 'data:text/javascript,' + encodeURIComponent(stubs[specifier]), shortCircuit: true };
  }
  if (specifier === 'k6' || specifier.startsWith('k6/')) {
    throw new Error('k6 module ' + specifier + ' has no stub in loadtest/k6check_test.go');
  }
  return next(specifier, context);
}
`

// harness imports one script the way k6's init context would (with __ENV
// and __VU) and prints what it exports.
const harness = `import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
register(pathToFileURL(process.argv[2]).href);
globalThis.__ENV = {};
globalThis.__VU = 0;
globalThis.__ITER = 0;
const m = await import(pathToFileURL(process.argv[3]).href);
const kinds = {};
for (const [k, v] of Object.entries(m)) kinds[k] = typeof v;
process.stdout.write(JSON.stringify({ exports: kinds, options: m.options ?? null }));
`

func node(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "node")
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check the k6 scripts (apt-get install nodejs): %v", err)
	}
	return p
}

// nodeCheck is `node --check` of src as an ES module.
func nodeCheck(t *testing.T, src []byte) (string, error) {
	t.Helper()
	cmd := exec.Command(node(t), "--input-type=module", "--check")
	cmd.Stdin = bytes.NewReader(src)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type scriptInfo struct {
	Exports map[string]string `json:"exports"`
	Options *struct {
		Scenarios  map[string]map[string]any `json:"scenarios"`
		Thresholds map[string][]string       `json:"thresholds"`
	} `json:"options"`
}

// evaluate copies the k6 scripts (with overrides by name) into a temporary
// ES module package and evaluates script there against the stubs.
func evaluate(t *testing.T, script string, overrides map[string]string) (scriptInfo, string, error) {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join("k6", "*.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no k6 scripts under loadtest/k6 (%v)", err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Base(f), string(b))
	}
	for name, text := range overrides {
		write(name, text)
	}
	stubs, err := json.Marshal(k6Stubs)
	if err != nil {
		t.Fatal(err)
	}
	write("package.json", `{"type":"module"}`)
	write("hooks.mjs", strings.Replace(hooks, "%s", string(stubs), 1))
	write("harness.mjs", harness)
	cmd := exec.Command(node(t), filepath.Join(dir, "harness.mjs"), filepath.Join(dir, "hooks.mjs"), filepath.Join(dir, script))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return scriptInfo{}, stderr.String(), err
	}
	var info scriptInfo
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		t.Fatalf("%s: harness output %q: %v", script, stdout.String(), err)
	}
	return info, stderr.String(), nil
}

// knownExecutors are k6's scenario executors.
var knownExecutors = map[string]bool{
	"shared-iterations": true, "per-vu-iterations": true, "constant-vus": true,
	"ramping-vus": true, "constant-arrival-rate": true, "ramping-arrival-rate": true,
	"externally-controlled": true,
}

func TestK6ScriptsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("k6", "*.js"))
	if err != nil || len(files) < len(scenarios)+1 {
		t.Fatalf("want lib.js and %v under loadtest/k6, found %v (%v)", scenarios, files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := nodeCheck(t, src); err != nil {
			t.Errorf("node --check %s: %v\n%s", f, err, out)
		}
	}
}

func TestK6ScenariosExportOptionsAndDefault(t *testing.T) {
	testenv.Need(t, "node")
	for _, s := range scenarios {
		t.Run(s, func(t *testing.T) {
			info, stderr, err := evaluate(t, s, nil)
			if err != nil {
				t.Fatalf("evaluating %s: %v\n%s", s, err, stderr)
			}
			if info.Exports["default"] != "function" {
				t.Errorf("%s: no default function (exports %v)", s, info.Exports)
			}
			if info.Exports["setup"] != "function" {
				t.Errorf("%s: no setup() creating the campaign (exports %v)", s, info.Exports)
			}
			if info.Options == nil {
				t.Fatalf("%s: no exported options", s)
			}
			if len(info.Options.Thresholds) == 0 {
				t.Errorf("%s: options have no thresholds", s)
			}
			for metric, rules := range info.Options.Thresholds {
				if len(rules) == 0 {
					t.Errorf("%s: threshold on %s has no rule", s, metric)
				}
			}
			for _, m := range []string{"unexpected_status", "http_req_duration{name:open}"} {
				if _, ok := info.Options.Thresholds[m]; !ok {
					t.Errorf("%s: no threshold on %s", s, m)
				}
			}
			if len(info.Options.Scenarios) == 0 {
				t.Errorf("%s: options have no scenarios", s)
			}
			for name, sc := range info.Options.Scenarios {
				if ex, _ := sc["executor"].(string); !knownExecutors[ex] {
					t.Errorf("%s: scenario %s has executor %q", s, name, sc["executor"])
				}
			}
		})
	}
}

// The checks above must fail on a broken script, or they prove nothing.
func TestK6CheckCatchesBrokenScripts(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("k6", "rain.js"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), "export default function (data) {", "export default function (data) {{", 1)
	if broken == string(src) {
		t.Fatal("rain.js changed: update the broken copy in this test")
	}
	if out, err := nodeCheck(t, []byte(broken)); err == nil {
		t.Errorf("node --check accepted a syntax error:\n%s", out)
	}
	// A name imported from lib.js or from k6 that is not exported fails to link.
	for what, text := range map[string]string{
		"lib.js": strings.Replace(string(src), "import {", "import { chek,", 1),
		"k6":     "import { chek } from 'k6';\n" + string(src),
	} {
		_, stderr, err := evaluate(t, "rain.js", map[string]string{"rain.js": text})
		if err == nil || !strings.Contains(stderr, "chek") {
			t.Errorf("evaluation of rain.js importing a name %s does not export: err %v\n%s", what, err, stderr)
		}
	}

}
