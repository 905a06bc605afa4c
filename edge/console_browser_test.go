package edge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/consumer"
)

// The console in a real browser: headless Chromium (Debian's package,
// deploy/local/install.sh) driven over the DevTools protocol. A merchant
// signs in with its token, pages through its campaigns and filters them by
// state, is shown the server's validation error on the field it names, creates a campaign in the browser's time zone, watches
// packets being opened through the API (charts and counters move, claims
// reach PostgreSQL), adds stock, looks a user up, downloads the claims CSV
// and ends the campaign. Another merchant's campaign is not found. No
// request carries the token in its URL, and the page raises no error and
// no CSP violation.
//
// CONSOLE_SCREENSHOTS=<dir> (make screenshots) also saves the page at
// desktop and phone width as console-desktop.png and console-phone.png.

// chromium finds the browser: CHROMIUM, else Debian's chromium.
func chromium(t *testing.T) string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: install Debian's chromium (deploy/local/install.sh checks) or set CHROMIUM")
	return ""
}

func TestConsoleBrowser(t *testing.T) {
	testenv.Need(t, "Redis, PostgreSQL, Kafka and Chromium (a real browser)")
	exe := chromium(t)
	start := time.Now()
	topic := testenv.NewTopic(t, 1)
	h := newHarness(t, harnessOpt{tcp: true, topic: topic})
	db := testenv.Store(t)
	// A consumer, so that claims reach claim_log while the page watches.
	ccfg := consumerproc.DefaultMainConfig().Consumer
	ccfg.Group = fmt.Sprintf("g_console_%d", time.Now().UnixNano())
	cons, err := consumer.New(ccfg, pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: topic, DLQTopic: topic + ".dlq", Partitions: 1},
		db, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopConsumer := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() { consumed <- cons.Run(cctx) }()
	defer func() { stopConsumer(); <-consumed }()

	_, token := h.newMerchant("console")
	// 21 upcoming campaigns: the list's two pages of 20.
	for i := range 21 {
		h.createAs(token, time.Now().Add(time.Duration(i+1)*time.Hour), time.Now().Add(48*time.Hour), `{"5":1}`)
	}
	_, otherToken := h.newMerchant("console-other")
	theirs := h.liveAs(otherToken, `{"5":1}`)

	downloads := t.TempDir()
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	// What the page must never do: throw, break its CSP, or put the token
	// in a URL.
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, fmt.Sprintf("exception: %s %v", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError && !strings.HasPrefix(ev.Entry.Text, "Failed to load resource: the server responded with a status of 4") {
				problems = append(problems, "console: "+ev.Entry.Text)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console.error")
			}
		case *network.EventRequestWillBeSent:
			if strings.Contains(ev.Request.URL, token) {
				problems = append(problems, "token in a URL: "+ev.Request.URL)
			}
		}
	}); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	const zone = "Asia/Shanghai" // the browser's time zone; the API's times are UTC
	shanghai, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, _ := chromedp.Run(c, chromedp.Evaluate[string](expr))
		return s
	}
	text := func(sel string) string {
		return eval(fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel))
	}
	// waitText waits until sel's text satisfies ok.
	waitText := func(what, sel string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := text(sel)
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("%s: %s is %q; the page: %.2000s; problems: %q", what, sel, s, text("main"), problems)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// setv sets a field's value as typing would (the input event included).
	setv := func(sel, v string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(e => { e.value = %q; e.dispatchEvent(new Event("input", {bubbles: true})); return true })(document.querySelector(%q))`, v, sel))(ctx, t)
			return err
		})
	}
	attr := func(sel, name string) string {
		return eval(fmt.Sprintf(`(document.querySelector(%q)||{dataset:{}}).dataset[%q]||""`, sel, name))
	}

	run("start", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
			return err
		}
		if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}))

	// Sign in with the keyboard: a wrong token first.
	run("sign in page", chromedp.Navigate(h.url+"/console"), chromedp.WaitVisible(chromedp.CSS("#token")))
	run("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "rpm_wrong"+kb.Enter))
	waitText("wrong token", "#token-error", func(s string) bool { return strings.Contains(s, "not accepted") })
	run("sign in", setv("#token", ""), chromedp.SendKeys(chromedp.CSS("#token"), token+kb.Enter))
	waitText("campaigns", "#view-title", func(s string) bool { return s == "Campaigns" })
	if stored := eval(`sessionStorage.getItem("rain.console.token")`); stored != token {
		t.Fatalf("sessionStorage holds %q", stored)
	}

	// The list: 20 a page, the next page, the state filter.
	rows := func() string { return eval(`String(document.querySelectorAll("#campaigns tbody tr").length)`) }
	waitText("first page", "#next-page", func(s string) bool { return s == "Next page" })
	if n := rows(); n != "20" {
		t.Errorf("first page: %s rows", n)
	}
	run("next page", chromedp.Click(chromedp.CSS("#next-page")))
	waitText("second page", ".pager", func(s string) bool { return s == "First page" })
	if n := rows(); n != "1" {
		t.Errorf("second page: %s rows", n)
	}
	run("filter", chromedp.Navigate(h.url+"/console#/campaigns"), chromedp.WaitVisible(chromedp.CSS("#state-filter")),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(e => { e.value = "live"; e.dispatchEvent(new Event("change")); return true })(document.querySelector("#state-filter"))`)(ctx, t)
			return err
		}))
	waitText("live filter", "main", func(s string) bool { return strings.Contains(s, "No campaigns here yet.") })
	if hash := eval(`location.hash`); hash != "#/campaigns?state=live" {
		t.Errorf("filter: %s", hash)
	}

	// Another merchant's campaign is not found.
	run("theirs", chromedp.Navigate(fmt.Sprintf("%s/console#/campaign/%d", h.url, theirs)))
	waitText("theirs", "main .error", func(s string) bool { return strings.Contains(s, "(404)") })

	// Create: the server's validation error on the field it names, then
	// the campaign, its window typed in the browser's time zone.
	run("new", chromedp.Navigate(h.url+"/console#/new"), chromedp.WaitVisible(chromedp.CSS("#create")))
	from := time.Now().In(shanghai).Add(-time.Minute).Truncate(time.Second)
	to := from.Add(time.Hour)
	const local = "2006-01-02T15:04:05"
	run("fill", chromedp.SendKeys(chromedp.CSS("#name"), "Browser rain"),
		setv("#start", from.Format(local)), setv("#end", from.Format(local)),
		setv("#amount-1", "20"), setv("#count-1", "5"),
		setv("#amount-2", "5"), setv("#count-2", "25"),
		chromedp.Click(chromedp.CSS("#create-submit")))
	waitText("validation", "#end-error", func(s string) bool { return strings.HasPrefix(s, "end_time must be") })
	run("fix", setv("#end", to.Format(local)), chromedp.Click(chromedp.CSS("#create-submit")))
	hash := ""
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(hash, "#/campaign/") {
		if time.Now().After(deadline) {
			t.Fatalf("no campaign page after create: %q (%s)", hash, text("main"))
		}
		time.Sleep(100 * time.Millisecond)
		hash = eval(`location.hash`)
	}
	id, _ := strconv.ParseInt(strings.TrimPrefix(hash, "#/campaign/"), 10, 64)
	h.t.Cleanup(func() { testenv.DeleteCampaign(db.DB, id) })
	st, c := h.do("GET", fmt.Sprintf("/campaign/%d", id), token, "")
	if st != 200 || c["start_time"] != from.UTC().Format(time.RFC3339) || c["end_time"] != to.UTC().Format(time.RFC3339) || c["total"] != 30.0 {
		t.Fatalf("created: %d %v (typed %s to %s in %s)", st, c, from.Format(local), to.Format(local), zone)
	}

	// The live view: open packets through the API while the page watches.
	waitText("live", "#live-state", func(s string) bool { return s == "live" })
	waitText("first event", "#live-remaining", func(s string) bool { return s == "30" })
	stockBefore := attr("#chart-stock", "items")
	for i := range 40 { // 30 packets: 30 OK, then SOLD_OUT; and a repeat of each fifth
		h.open(id, fmt.Sprintf("user-%d", i))
		if i%5 == 0 {
			h.open(id, fmt.Sprintf("user-%d", i))
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitText("claims made", "#live-claims", func(s string) bool { return s == "30" })
	waitText("packets left", "#live-remaining", func(s string) bool { return s == "0" })
	waitText("persisted", "#live-persisted", func(s string) bool { return s == "30" })
	// The rates chart's peaks over its window: OK, ALREADY_OPENED and
	// SOLD_OUT each above zero at some point.
	c2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	peaks, err := chromedp.Run(c2, chromedp.Evaluate[map[string]float64](`JSON.parse(document.querySelector("#chart-rates").dataset.peaks||"{}")`))
	if err != nil || peaks["ok"] <= 0 || peaks["already"] <= 0 || peaks["soldout"] <= 0 {
		t.Errorf("the rates chart did not move: peaks %v (%v)", peaks, err)
	}
	if n, _ := strconv.Atoi(attr("#chart-claims", "samples")); n < 3 {
		t.Errorf("the claims chart has %d samples", n)
	}
	if after := attr("#chart-stock", "items"); after == stockBefore || after != "[0,0]" {
		t.Errorf("the stock chart: %s, then %s", stockBefore, after)
	}
	if rows := text("#inventory tbody"); !strings.Contains(rows, "25") {
		t.Errorf("inventory: %q", rows)
	}

	// Every field has a label.
	if unlabelled := eval(`[...document.querySelectorAll("input,select")].filter(e => !e.labels || !e.labels.length).map(e => e.id).join(" ")`); unlabelled != "" {
		t.Errorf("fields without a label: %v", unlabelled)
	}

	// Add stock (its own Idempotency-Key), look up a user, download the CSV.
	run("add stock", setv("#stock-count", "5"), chromedp.Click(chromedp.CSS("#stock button[type=submit]")))
	waitText("stock added", "#action-result", func(s string) bool { return strings.HasPrefix(s, "Added 5 of 20") })
	waitText("stock live", "#live-remaining", func(s string) bool { return s == "5" })
	run("look up", chromedp.SendKeys(chromedp.CSS("#lookup-user"), "user-3"+kb.Enter))
	waitText("look up", "#lookup-result", func(s string) bool { return strings.HasPrefix(s, "user-3: ") })
	if dir := os.Getenv("CONSOLE_SCREENSHOTS"); dir != "" {
		screenshots(t, ctx, dir)
	}
	run("look up none", setv("#lookup-user", ""), chromedp.SendKeys(chromedp.CSS("#lookup-user"), "nobody"+kb.Enter))
	waitText("look up none", "#lookup-result", func(s string) bool { return strings.Contains(s, "no claim") })
	run("csv", chromedp.Click(chromedp.CSS("#download-csv")))
	file := filepath.Join(downloads, fmt.Sprintf("campaign-%d-claims.csv", id))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		b, err := os.ReadFile(file)
		return err == nil && strings.Count(string(b), "\r\n") == 31, fmt.Sprintf("%s: %d bytes, %v", file, len(b), err)
	})
	if b, _ := os.ReadFile(file); !strings.HasPrefix(string(b), "user_id,amount,claimed_at\r\nuser-0,") {
		t.Errorf("CSV: %.80q", b)
	}

	// End now (two steps), and opens are refused.
	run("end", chromedp.Click(chromedp.CSS("#end-now")), chromedp.Click(chromedp.CSS("#end-confirm")))
	waitText("ended", "#campaign-state", func(s string) bool { return s == "ended" })
	if st, m := h.open(id, "late-user"); st != 400 || m["status"] != "ENDED" {
		t.Errorf("open after the end: %d %v", st, m)
	}
	run("ended list", chromedp.Navigate(h.url+"/console#/campaigns?state=ended"))
	waitText("ended list", "#campaigns", func(s string) bool { return strings.Contains(s, "Browser rain") })
	run("history", chromedp.Navigate(fmt.Sprintf("%s/console#/campaign/%d", h.url, id)), chromedp.WaitVisible(chromedp.CSS("#history")))
	waitText("history", "#history tbody", func(s string) bool {
		return strings.Contains(s, "end") && strings.Contains(s, "stock") && strings.Contains(s, "create")
	})

	// Sign out: the token leaves the tab.
	run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if stored := eval(`sessionStorage.getItem("rain.console.token") || ""`); stored != "" {
		t.Errorf("after sign out, sessionStorage holds %q", stored)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("the browser test took %v", time.Since(start).Round(time.Millisecond))
}

// screenshots saves the campaign page at desktop and phone width.
func screenshots(t *testing.T, ctx context.Context, dir string) {
	shot := func(w, h int64, opts ...chromedp.EmulateViewportOption) []byte {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h, opts...), chromedp.Sleep(1500*time.Millisecond)); err != nil {
			t.Fatalf("screenshots: %v", err)
		}
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshots: %v", err)
		}
		return b
	}
	desktop := shot(1280, 900)
	phone := shot(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1000)); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"console-desktop.png": desktop, "console-phone.png": phone} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
