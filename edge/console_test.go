package edge

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// The console's files and headers (pure: no service needed). What the page
// does in a browser is console_browser_test.go's.

func TestConsoleHeaders(t *testing.T) {
	h := (&Server{}).Handler()
	ctx := newCtx("GET", "/console", "")
	h(ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.ContentType()) != "text/html; charset=utf-8" {
		t.Fatalf("GET /console: %d %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentType())
	}
	csp := string(ctx.Response.Header.Peek("Content-Security-Policy"))
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
		t.Errorf("CSP %q allows inline code or other hosts", csp)
	}
	for k, want := range map[string]string{"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
		if got := string(ctx.Response.Header.Peek(k)); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	page := append([]byte(nil), ctx.Response.Body()...)
	// No inline script or style: every script has a src, no style element
	// or attribute, no event handler attribute.
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`), regexp.MustCompile(`https?://`)} {
		if bad.Match(page) {
			t.Errorf("page matches %s", bad)
		}
	}
	// Assets: versioned paths, cached for good; the same name under any
	// other version is 404.
	refs := regexp.MustCompile(`(?:src|href)="(/console/assets/([0-9a-f]{16})/[a-z]+\.(?:js|css))"`).FindAllSubmatch(page, -1)
	if len(refs) != 2 {
		t.Fatalf("page refers to %d versioned assets: %s", len(refs), page)
	}
	for _, name := range []string{"app.js", "api.js", "live.js", "chart.js", "style.css"} {
		uri := "/console/assets/" + console.version + "/" + name
		ctx := newCtx("GET", uri, "")
		h(ctx)
		ct := string(ctx.Response.Header.ContentType())
		if ctx.Response.StatusCode() != 200 || !strings.HasPrefix(ct, map[bool]string{true: "text/css", false: "text/javascript"}[strings.HasSuffix(name, ".css")]) {
			t.Errorf("%s: %d %q", uri, ctx.Response.StatusCode(), ct)
		}
		if cc := string(ctx.Response.Header.Peek("Cache-Control")); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", uri, cc)
		}
		if string(ctx.Response.Header.Peek("Content-Security-Policy")) != consoleCSP {
			t.Errorf("%s: no CSP", uri)
		}
		body := ctx.Response.Body()
		// No other host, no eval, nothing written as HTML, the token in no URL.
		for _, bad := range []string{"http://", "https://", "eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML",
			"document.write", "localStorage", "document.cookie", "?token", "&token"} {
			if bytes.Contains(body, []byte(bad)) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
		old := newCtx("GET", "/console/assets/0000000000000000/"+name, "")
		h(old)
		if old.Response.StatusCode() != 404 {
			t.Errorf("%s under another version: %d", name, old.Response.StatusCode())
		}
	}
	for _, uri := range []string{"/console/assets/" + console.version + "/index.html", "/console/assets/" + console.version + "/nope.js", "/console/"} {
		ctx := newCtx("GET", uri, "")
		h(ctx)
		if ctx.Response.StatusCode() != 404 {
			t.Errorf("%s: %d", uri, ctx.Response.StatusCode())
		}
	}
	// HEAD works as on every GET route.
	head := newCtx("HEAD", "/console", "")
	h(head)
	if head.Response.StatusCode() != 200 || len(head.Response.Header.Peek("Content-Security-Policy")) == 0 {
		t.Errorf("HEAD /console: %d", head.Response.StatusCode())
	}
}

// TestConsoleVersion: the version is a hash of every asset, so a change to
// any module changes every asset's URL.
func TestConsoleVersion(t *testing.T) {
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(console.version) || len(console.assets) < 5 {
		t.Fatalf("version %q, %d assets", console.version, len(console.assets))
	}
	again := loadConsole()
	if again.version != console.version || !bytes.Equal(again.index, console.index) {
		t.Fatal("the version is not stable")
	}
	if !bytes.Contains(console.index, []byte("/console/assets/"+console.version+"/app.js")) || bytes.Contains(console.index, []byte("{{")) {
		t.Fatalf("index: %s", console.index)
	}
}
