package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/apps/invoices/internal/httpapi"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/platform"
)

// serverURL is the document's server the exchanges are addressed to: the
// router of the document matches requests against its servers.
const serverURL = "http://localhost:3334"

// kongURL is the document's server for the API through Kong.
const kongURL = "http://localhost:8000"

// undocumentedRoutes are served but deliberately not in the document.
var undocumentedRoutes = []string{"/metrics"}

// fakeApp is an in-memory httpapi.App holding one invoice.
type fakeApp struct {
	invoice domain.Invoice
	err     error // returned instead of doing the work
}

var _ httpapi.App = (*fakeApp)(nil)

func newFakeApp() *fakeApp {
	return &fakeApp{invoice: domain.Invoice{
		ID: uuid.NewString(), OrderID: uuid.NewString(), CustomerID: "c-1",
		Amount: 1999, Currency: "EUR", IssuedAt: time.Now().UTC(),
	}}
}

func (f *fakeApp) GetInvoice(_ context.Context, id string) (domain.Invoice, error) {
	if f.err != nil {
		return domain.Invoice{}, f.err
	}
	if id != f.invoice.ID {
		return domain.Invoice{}, domain.ErrInvoiceNotFound
	}
	return f.invoice, nil
}

func (f *fakeApp) InvoicesOfOrder(_ context.Context, orderID string) ([]domain.Invoice, error) {
	if f.err != nil {
		return nil, f.err
	}
	if orderID != f.invoice.OrderID {
		return nil, nil
	}
	return []domain.Invoice{f.invoice}, nil
}

func newHandler(app httpapi.App, health httpkit.Health) http.Handler {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return platform.Handler(log, health, httpapi.Routes(app, log))
}

var alive = httpkit.Health{Ping: func(context.Context) error { return nil }}

// contract is the served OpenAPI document with a router over its operations.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

// loadContract fetches GET /openapi.yaml from h, so that the document the
// tests hold the API to is the one the service serves, and validates it.
func loadContract(tb testing.TB, h http.Handler) contract {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(tb.Context(), http.MethodGet, "/openapi.yaml", nil))
	require.Equal(tb, http.StatusOK, rec.Code)
	require.Equal(tb, httpapi.OpenAPIContentType, rec.Header().Get("Content-Type"))
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	require.NoError(tb, err)
	require.True(tb, doc.IsOpenAPI31OrLater(), "openapi %s", doc.OpenAPI)
	require.NoError(tb, doc.Validate(tb.Context()))
	router, err := gorillamux.NewRouter(doc)
	require.NoError(tb, err)
	return contract{doc: doc, router: router}
}

// check holds one exchange against the document: the request must be valid
// exactly when reqValid says so (the handler and the document agree on what
// is acceptable), and the response must always match the document. It
// returns the operation's id.
func (c contract) check(tb testing.TB, h http.Handler, newReq func() *http.Request, reqValid bool, status int) string {
	tb.Helper()
	ctx := tb.Context()
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}

	req := newReq()
	route, params, err := c.router.FindRoute(req)
	require.NoError(tb, err, "the document has no operation for %s %s", req.Method, req.URL.Path)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	if reqValid {
		require.NoError(tb, err, "the document rejects a request the API is meant to accept")
	} else {
		require.Error(tb, err, "the document accepts a request the API rejects")
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, newReq())
	require.Equal(tb, status, rec.Code, "body: %s", rec.Body.String())
	require.NoError(tb, openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(strings.NewReader(rec.Body.String())),
		Options:                opts,
	}), "the response does not match the document; body: %s", rec.Body.String())
	return route.Operation.OperationID
}

// documentedStatuses lists "operationId status" for every response of the
// document.
func (c contract) documentedStatuses() []string {
	var out []string
	for _, item := range c.doc.Paths.Map() {
		for _, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, op.OperationID+" "+status)
			}
		}
	}
	slices.Sort(out)
	return out
}

// coverage records which documented responses the exchanges produced.
type coverage struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *coverage) add(op string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[op+" "+strconv.Itoa(status)] = true
}

func (c *coverage) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

func TestOpenAPI_exchanges_match_the_document(t *testing.T) {
	t.Parallel()
	c := loadContract(t, newHandler(newFakeApp(), alive))
	var cov coverage

	corr := http.Header{"X-Correlation-ID": {"corr-openapi-1"}}
	down := httpkit.Health{Ping: func(context.Context) error { return errors.New("db down") }}
	degraded := httpkit.Health{
		Ping: func(context.Context) error { return nil },
		Components: func() map[string]string {
			return map[string]string{"broker": "down", "router": "connecting", "forwarder": "up"}
		},
	}

	tests := []struct {
		name     string
		err      error           // the app fails with it
		health   *httpkit.Health // nil: the database answers
		target   string          // "{invoice}" and "{order}" stand for the stored invoice's ids
		header   http.Header
		reqValid bool
		status   int
	}{
		{name: "get", target: "/invoices/{invoice}", header: corr, reqValid: true, status: 200},
		{name: "get by upper-case id", target: "/invoices/{INVOICE}", reqValid: true, status: 200},
		{name: "get unknown", target: "/invoices/" + uuid.NewString(), reqValid: true, status: 404},
		{name: "get bad id", target: "/invoices/not-a-uuid", reqValid: true, status: 400},
		{name: "get fails inside", err: errors.New("boom"), target: "/invoices/{invoice}", reqValid: true, status: 500},

		{name: "list of an order", target: "/invoices?order_id={order}", header: corr, reqValid: true, status: 200},
		{name: "list of an order not invoiced yet", target: "/invoices?order_id=" + uuid.NewString(), reqValid: true, status: 200},
		{name: "list fails inside", err: errors.New("boom"), target: "/invoices?order_id={order}", reqValid: true, status: 500},
		{name: "list without order_id", target: "/invoices", status: 400},
		{name: "list with empty order_id", target: "/invoices?order_id=", status: 400},
		{name: "list with bad order_id", target: "/invoices?order_id=42", reqValid: true, status: 400},

		{name: "live", target: "/healthz", reqValid: true, status: 200},
		{name: "ready", target: "/readyz", reqValid: true, status: 200},
		{name: "ready but degraded", health: &degraded, target: "/readyz", reqValid: true, status: 200},
		{name: "not ready", health: &down, target: "/readyz", reqValid: true, status: 503},
		{name: "document", target: "/openapi.yaml", reqValid: true, status: 200},
	}
	// After every exchange: each documented response was produced.
	t.Cleanup(func() {
		for _, want := range c.documentedStatuses() {
			assert.True(t, cov.has(want), "no exchange produces the documented response %q", want)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := newFakeApp()
			app.err = tt.err
			health := alive
			if tt.health != nil {
				health = *tt.health
			}
			h := newHandler(app, health)
			target := strings.NewReplacer(
				"{invoice}", app.invoice.ID, "{INVOICE}", strings.ToUpper(app.invoice.ID), "{order}", app.invoice.OrderID,
			).Replace(tt.target)
			newReq := func() *http.Request {
				req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, serverURL+target, nil)
				for k, vs := range tt.header {
					for _, v := range vs {
						req.Header.Add(k, v)
					}
				}
				return req
			}
			cov.add(c.check(t, h, newReq, tt.reqValid, tt.status), tt.status)
		})
	}
}

func TestOpenAPI_undocumented_requests_get_problems(t *testing.T) {
	t.Parallel()
	h := newHandler(newFakeApp(), alive)
	c := loadContract(t, h)
	problem := c.doc.Components.Schemas["Problem"]
	require.NotNil(t, problem)

	tests := []struct {
		name   string
		method string
		target string
		status int
	}{
		{name: "unknown route", method: http.MethodGet, target: "/nope", status: 404},
		{name: "orders are not served here", method: http.MethodGet, target: "/orders", status: 404},
		{name: "post an invoice", method: http.MethodPost, target: "/invoices", status: 405},
		{name: "delete an invoice", method: http.MethodDelete, target: "/invoices/" + uuid.NewString(), status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequestWithContext(t.Context(), tt.method, serverURL+tt.target, nil)
			_, _, err := c.router.FindRoute(req)
			require.Error(t, err, "the document describes %s %s", tt.method, tt.target)

			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code)
			require.Equal(t, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
			var body any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.NoError(t, problem.Value.VisitJSON(body, openapi3.EnableJSONSchema2020()))
		})
	}
}

// TestOpenAPI_documents_every_route walks the real router: every route it
// serves is in the document and every operation of the document is served.
func TestOpenAPI_documents_every_route(t *testing.T) {
	t.Parallel()
	h := newHandler(newFakeApp(), alive)
	c := loadContract(t, h)

	var served []string
	routes, ok := h.(chi.Routes)
	require.True(t, ok, "platform.Handler returns a chi router")
	require.NoError(t, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !slices.Contains(undocumentedRoutes, route) {
			served = append(served, method+" "+route)
		}
		return nil
	}))
	var documented []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	assert.ElementsMatch(t, served, documented)

	// Kong does not route the operational endpoints (kong/kong.yml), so the
	// document offers them on the service's own server only.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, kongURL+p, nil)
		_, _, err := c.router.FindRoute(req)
		assert.Error(t, err, "the document offers %s through Kong", p)
	}
}
