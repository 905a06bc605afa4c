package edge

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"
)

// The merchant console: GET /console, a page of plain HTML, CSS and
// JavaScript modules embedded in the binary (no build step, no third-party
// host). It speaks the documented API with the merchant's token, which it
// keeps in the tab's sessionStorage and sends only in the Authorization
// header (docs/console.md).
//
// Assets are served under /console/assets/<version>/<file>, where version
// is a hash of every asset: they are cached for a year (immutable), and a
// new build changes every URL at once (the modules import each other by
// relative paths, so they stay one version). The page itself is no-cache.
// Every answer carries a Content-Security-Policy that allows this origin's
// scripts, styles and fetches only (no inline script or style).

//go:embed console
var consoleFS embed.FS

// consoleCSP is the console's Content-Security-Policy.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleAsset is one embedded file.
type consoleAsset struct {
	body        []byte
	contentType string
}

var console = loadConsole()

type consoleFiles struct {
	version string
	index   []byte // index.html with the versioned asset paths
	assets  map[string]consoleAsset
}

// loadConsole reads the embedded files, hashes them and writes the
// version into the page.
func loadConsole() consoleFiles {
	c := consoleFiles{assets: make(map[string]consoleAsset)}
	h := sha256.New()
	var names []string
	_ = fs.WalkDir(consoleFS, "console", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	var index []byte
	for _, p := range names {
		b, err := consoleFS.ReadFile(p)
		if err != nil {
			panic(err) // embedded: cannot fail
		}
		name := strings.TrimPrefix(p, "console/")
		if name == "index.html" {
			index = b
			continue
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(b)
		var ct string
		switch path.Ext(name) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		default:
			continue // not served
		}
		c.assets[name] = consoleAsset{body: b, contentType: ct}
	}
	c.version = hex.EncodeToString(h.Sum(nil))[:16]
	c.index = bytes.ReplaceAll(index, []byte("{{assets}}"), []byte("/console/assets/"+c.version))
	return c
}

// consoleHeaders are the headers of every console answer.
func consoleHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// serveConsole is GET /console: the page, revalidated on every load so a
// new version's asset paths are seen at once.
func serveConsole(ctx *fasthttp.RequestCtx) {
	consoleHeaders(ctx)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-cache")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(console.index)
}

// serveConsoleAsset is GET /console/assets/{version}/{file}: an asset of
// this version, cached for good; any other version or file is 404.
func serveConsoleAsset(ctx *fasthttp.RequestCtx) {
	a, ok := console.assets[string(routeParam(ctx, "file"))]
	if !ok || string(routeParam(ctx, "version")) != console.version {
		writeError(ctx, errUnknownPath)
		return
	}
	consoleHeaders(ctx)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=31536000, immutable")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(a.contentType)
	ctx.SetBody(a.body)
}
