package edge

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

// openAPIDoc is the api's HTTP contract, an OpenAPI 3 document: every
// route, status and body. The edge tests validate every request they send
// and every answer they get against it (openapi_test.go), so it cannot
// drift from the code.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document (a copy).
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// serveOpenAPI is GET /openapi.json.
func serveOpenAPI(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, openAPIDoc)
}
