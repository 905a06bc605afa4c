package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/valyala/fasthttp"
)

// The OpenAPI document (openapi.json) is checked against every exchange
// the HTTP tests make: the harness (server_test.go) hands each request and
// its answer to checkExchange, which validates both with kin-openapi.
//
// The rules: an answer must match what the document says of its route and
// status (statuses it does not list fail). A request the document refuses
// must be refused by the server too (a 4xx): the tests send invalid
// requests on purpose, and the document must not allow what the server
// refuses nor the server take what the document refuses. A path or method
// the document does not have must be answered 404 or 405 with the error
// body: a route the code serves and the document lacks fails here.

var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	errs   *openapi3.Schema
	err    error
}

func loadContract() error {
	contract.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(openAPIDoc)
		if err == nil {
			err = doc.Validate(loader.Context)
		}
		if err != nil {
			contract.err = fmt.Errorf("openapi.json: %w", err)
			return
		}
		doc.Servers = openapi3.Servers{{URL: "http://api"}} // the harness's host
		contract.doc = doc
		contract.errs = doc.Components.Schemas["Error"].Value
		contract.router, contract.err = gorillamux.NewRouter(doc)
	})
	return contract.err
}

// exchange is one request the tests sent and the answer they got.
type exchange struct {
	method, uri string // uri: path and query, as sent
	reqHeader   http.Header
	reqBody     []byte
	status      int
	respHeader  http.Header
	respBody    []byte
}

// fromFast records a fasthttp request and response.
func fromFast(req *fasthttp.Request, resp *fasthttp.Response) exchange {
	x := exchange{method: string(req.Header.Method()), uri: string(req.RequestURI()),
		reqHeader: http.Header{}, reqBody: append([]byte(nil), req.Body()...),
		status: resp.StatusCode(), respHeader: http.Header{}, respBody: append([]byte(nil), resp.Body()...)}
	for k, v := range req.Header.All() {
		x.reqHeader.Add(string(k), string(v))
	}
	for k, v := range resp.Header.All() {
		x.respHeader.Add(string(k), string(v))
	}
	return x
}

// checkExchange validates x against the document, failing t.
func checkExchange(t testing.TB, x exchange) {
	t.Helper()
	if err := validateExchange(x); err != nil {
		t.Errorf("OpenAPI contract: %s %s → %d %.300s:\n%v", x.method, x.uri, x.status, x.respBody, err)
	}
}

func validateExchange(x exchange) error {
	if err := loadContract(); err != nil {
		return err
	}
	ctx := context.Background()
	req := httptest.NewRequest(x.method, "http://api"+x.uri, bytes.NewReader(x.reqBody))
	req.Header = x.reqHeader.Clone()
	if len(x.reqBody) > 0 {
		// The server reads every body as JSON, whatever its Content-Type
		// (curl -d sends a form's); so does the document.
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := contract.router.FindRoute(req)
	if err != nil {
		// Not a route of the document: only the error answers fit.
		if x.status != http.StatusNotFound && x.status != http.StatusMethodNotAllowed {
			return fmt.Errorf("no route of the document matches (%v), yet the answer is %d", err, x.status)
		}
		return validateErrorBody(x.respBody)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && x.status < 400 {
		return fmt.Errorf("the document refuses the request, the server answered %d: %v", x.status, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.status,
		Header: x.respHeader, Options: opts}
	out.SetBodyBytes(x.respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("answer: %v", err)
	}
	return nil
}

func validateErrorBody(body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("error body is not JSON: %v", err)
	}
	return contract.errs.VisitJSON(v)
}

func TestOpenAPIDocument(t *testing.T) {
	if err := loadContract(); err != nil {
		t.Fatal(err)
	}
	// Every operation has an id and documents its error answers.
	for path, item := range contract.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
			if op.Security != nil && op.Responses.Status(401) == nil {
				t.Errorf("%s %s: a merchant route without its 401", method, path)
			}
		}
	}
	// The checker itself: what it must refuse.
	for _, x := range []exchange{
		{method: "GET", uri: "/healthz", status: 200, respBody: []byte(`{"status":"OK","extra":1}`)},
		{method: "GET", uri: "/no-such-route", status: 200, respBody: []byte(`{"status":"OK"}`)},
		{method: "GET", uri: "/campaign/1", status: 418, respBody: []byte(`{"status":"INTERNAL","error":"x"}`)},
		{method: "POST", uri: "/campaign/1/stock", reqBody: []byte(`{"amount":0,"count":1}`), status: 200,
			respBody: []byte(`{"campaign_id":1,"amount":0,"count":1,"total":1,"applied":true,"at":"2025-01-01T00:00:00Z"}`)},
		{method: "GET", uri: "/no-such-route", status: 404, respBody: []byte(`{"status":"NOPE","error":"x"}`)},
		// What the server refuses, the document refuses: an
		// inventory key of "", an id past int64, a user id with U+FEFF.
		{method: "POST", uri: "/campaign", reqBody: []byte(`{"name":"x","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-02T00:00:00Z","inventory":{"":1}}`),
			status: 201, respBody: []byte(`{"id":1}`)},
		{method: "POST", uri: "/campaign", reqBody: []byte(`{"name":"x","start_time":"2025-01-01t00:00:00z","end_time":"2025-01-02T00:00:00Z","inventory":{"5":1}}`),
			status: 201, respBody: []byte(`{"id":1}`)},
		{method: "POST", uri: "/campaign/99999999999999999999/open", reqBody: []byte(`{"user_id":"a"}`), status: 200, respBody: []byte(`{"status":"OK","amount":5}`)},
		{method: "POST", uri: "/campaign/1/open", reqBody: []byte("{\"user_id\":\"a\ufeffb\"}"), status: 200, respBody: []byte(`{"status":"OK","amount":5}`)},
		{method: "POST", uri: "/campaign/1/stock", reqBody: []byte(`{"amount":5,"count":1}`), status: 400,
			respBody: []byte(`{"status":"ENDED","error":"x"}`)},
	} {
		x.reqHeader, x.respHeader = http.Header{}, http.Header{"Content-Type": {"application/json"}}
		if x.reqBody != nil {
			x.reqHeader.Set("Content-Type", "application/json")
		}
		if err := validateExchange(x); err == nil {
			t.Errorf("the checker passed %s %s → %d %s", x.method, x.uri, x.status, x.respBody)
		}
	}
}

// TestOpenAPIServed: GET /openapi.json serves the document.
func TestOpenAPIServed(t *testing.T) {
	s := &Server{}
	h := s.Handler()
	ctx := newCtx("GET", "/openapi.json", "")
	h(ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), openAPIDoc) ||
		!strings.HasPrefix(string(ctx.Response.Header.ContentType()), "application/json") {
		t.Fatalf("GET /openapi.json: %d %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentType())
	}
	var doc map[string]any
	if err := json.NewDecoder(io.LimitReader(bytes.NewReader(ctx.Response.Body()), 1<<20)).Decode(&doc); err != nil || doc["openapi"] != "3.1.0" {
		t.Fatalf("served document: %v %v", doc["openapi"], err)
	}
}
