package httpapi_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit/openapitest"
)

// serverURL is the document's server the exchanges are addressed to: the
// router of the document matches requests against its servers.
const serverURL = "http://localhost:3333"

// kongURL is the document's server for the API through Kong.
const kongURL = "http://localhost:8000"

// undocumentedRoutes are served but deliberately not in the document.
var undocumentedRoutes = []string{"/metrics"}

// failingListApp fails every ListOrders.
type failingListApp struct{ *fakeApp }

func (failingListApp) ListOrders(context.Context, app.ListQuery) ([]domain.Order, error) {
	return nil, errors.New("connection reset")
}

// errDBDown is how the store fails while PostgreSQL restarts.
var errDBDown = fmt.Errorf("insert order: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})

func TestOpenAPI_exchanges_match_the_document(t *testing.T) {
	t.Parallel()
	c := openapitest.Load(t, newHandler(t, &fakeApp{}), httpapi.OpenAPIContentType)
	cov := c.Cover(t) // after every exchange: each documented response was produced

	const jsonType = "application/json"
	validCursor := base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString()))
	corr := http.Header{"X-Correlation-ID": {"corr-openapi-1"}}
	key := func(k string) http.Header { return http.Header{httpapi.IdempotencyKeyHeader: {k}} }
	down := httpkit.Health{Ping: func(context.Context) error { return errors.New("db down") }}
	degraded := httpkit.Health{
		Ping: func(context.Context) error { return nil },
		Components: func() map[string]string {
			return map[string]string{"broker": "connecting", "router": "down", "forwarder": "up"}
		},
	}

	tests := []struct {
		name        string
		app         func(*fakeApp) httpapi.App // wraps the seeded fake; nil uses it as is
		replay      bool                       // the fake reports a replay
		placeErr    error                      // the fake's PlaceOrder fails with it
		getErr      error                      // the fake's GetOrder fails with it
		health      *httpkit.Health            // nil: the database answers
		invoiced    bool                       // the stored order is invoiced
		caller      string                     // the X-Consumer-Custom-ID sent: "" is c-1, "-" none
		method      string
		target      string // "{known}" stands for a stored order's id
		contentType string
		body        string
		header      http.Header
		reqValid    bool
		status      int
	}{
		// POST /orders
		{name: "place", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, reqValid: true, status: 201},
		{name: "place with key and correlation id", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, header: key("key-1"), reqValid: true, status: 201},
		{name: "place with charset", method: http.MethodPost, target: "/orders", contentType: jsonType + "; charset=utf-8", body: validBody, reqValid: true, status: 201},
		{name: "idempotent replay", replay: true, method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, header: key("key-1"), reqValid: true, status: 200},
		{name: "key reused with another body", placeErr: domain.ErrIdempotencyKeyReused, method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, header: key("key-1"), reqValid: true, status: 422},
		{name: "place while the database is down", placeErr: errDBDown, method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, reqValid: true, status: 503},
		{name: "place fails inside", placeErr: errors.New("tx aborted"), method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, reqValid: true, status: 500},
		{name: "malformed json", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":`, status: 400},
		{name: "empty body", method: http.MethodPost, target: "/orders", contentType: jsonType, body: "", status: 400},
		{name: "non-ascii idempotency key", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, header: key("ключ"), status: 400},
		{name: "idempotency key too long", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, header: key(strings.Repeat("k", 256)), status: 400},
		{name: "oversize body", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"` + strings.Repeat("x", httpkit.MaxBodyBytes) + `","amount":1,"currency":"EUR"}`, status: 413},
		{name: "text/plain", method: http.MethodPost, target: "/orders", contentType: "text/plain", body: validBody, status: 415},
		{name: "amount as string", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":"100","currency":"EUR"}`, status: 422},
		{name: "fractional amount", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":12.5,"currency":"EUR"}`, status: 422},
		{name: "unknown field", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"EUR","discount":5}`, status: 422},
		{name: "missing fields", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{}`, status: 422},
		{name: "amount zero", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":0,"currency":"EUR"}`, status: 422},
		{name: "amount over 10^12", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":1000000000001,"currency":"EUR"}`, status: 422},
		{name: "customer_id too long", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"` + strings.Repeat("c", 65) + `","amount":1,"currency":"EUR"}`, status: 422},
		{name: "lowercase currency", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"eur"}`, status: 422},
		// Shaped right, refused by the business rules: the document cannot say it.
		{name: "not an ISO 4217 currency", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"ABC"}`, reqValid: true, status: 422},
		{name: "blank customer_id", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"customer_id":"  ","amount":1,"currency":"EUR"}`, reqValid: true, status: 422},
		// The validator decodes the first JSON value only; the API rejects the rest.
		{name: "trailing data", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody + validBody, reqValid: true, status: 400},
		{name: "place without customer_id", method: http.MethodPost, target: "/orders", contentType: jsonType, body: `{"amount":1999,"currency":"EUR"}`, reqValid: true, status: 201},
		{name: "place unauthenticated", caller: "-", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, status: 401},
		{name: "place with an invalid caller", caller: strings.Repeat("c", 65), method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, reqValid: true, status: 401},
		{name: "place for another customer", caller: "c-2", method: http.MethodPost, target: "/orders", contentType: jsonType, body: validBody, reqValid: true, status: 403},

		// GET /orders
		{name: "list", method: http.MethodGet, target: "/orders", header: corr, reqValid: true, status: 200},
		{name: "list a full page", method: http.MethodGet, target: "/orders?limit=2", reqValid: true, status: 200},
		{name: "list by customer after a cursor", method: http.MethodGet, target: "/orders?customer_id=c-1&limit=100&cursor=" + validCursor, reqValid: true, status: 200},
		{name: "list nothing", caller: "nobody", method: http.MethodGet, target: "/orders?customer_id=nobody", reqValid: true, status: 200},
		{name: "list while the database is down", app: func(f *fakeApp) httpapi.App { f.listErr = errDBDown; return f }, method: http.MethodGet, target: "/orders", reqValid: true, status: 503},
		{name: "list fails inside", app: func(f *fakeApp) httpapi.App { return failingListApp{f} }, method: http.MethodGet, target: "/orders", reqValid: true, status: 500},
		{name: "limit zero", method: http.MethodGet, target: "/orders?limit=0", status: 400},
		{name: "limit over max", method: http.MethodGet, target: "/orders?limit=101", status: 400},
		{name: "limit not a number", method: http.MethodGet, target: "/orders?limit=abc", status: 400},
		{name: "cursor not base64url", method: http.MethodGet, target: "/orders?cursor=!!!", status: 400},
		{name: "cursor not one the API made", method: http.MethodGet, target: "/orders?cursor=" + uuid.NewString(), reqValid: true, status: 400},
		{name: "list unauthenticated", caller: "-", method: http.MethodGet, target: "/orders", status: 401},
		{name: "list another customer's", method: http.MethodGet, target: "/orders?customer_id=c-2", reqValid: true, status: 403},

		// GET /orders/{id}
		{name: "get", method: http.MethodGet, target: "/orders/{known}", header: corr, reqValid: true, status: 200},
		{name: "get an invoiced order", invoiced: true, method: http.MethodGet, target: "/orders/{known}", reqValid: true, status: 200},
		{name: "list invoiced orders", invoiced: true, method: http.MethodGet, target: "/orders?customer_id=c-1", reqValid: true, status: 200},
		{name: "get by upper-case id", method: http.MethodGet, target: "/orders/{KNOWN}", reqValid: true, status: 200},
		{name: "get unknown", method: http.MethodGet, target: "/orders/" + uuid.NewString(), reqValid: true, status: 404},
		{name: "get another customer's", caller: "c-2", method: http.MethodGet, target: "/orders/{known}", reqValid: true, status: 404},
		{name: "get unauthenticated", caller: "-", method: http.MethodGet, target: "/orders/{known}", status: 401},
		{name: "get bad id", method: http.MethodGet, target: "/orders/not-a-uuid", reqValid: true, status: 400},
		{name: "get while the database is down", getErr: errDBDown, method: http.MethodGet, target: "/orders/{known}", reqValid: true, status: 503},
		{name: "get fails inside", getErr: errors.New("boom"), method: http.MethodGet, target: "/orders/{known}", reqValid: true, status: 500},

		// operations
		{name: "live", method: http.MethodGet, target: "/healthz", reqValid: true, status: 200},
		{name: "ready", method: http.MethodGet, target: "/readyz", reqValid: true, status: 200},
		{name: "ready but degraded", health: &degraded, method: http.MethodGet, target: "/readyz", reqValid: true, status: 200},
		{name: "not ready", health: &down, method: http.MethodGet, target: "/readyz", reqValid: true, status: 503},
		{name: "document", method: http.MethodGet, target: "/openapi.yaml", reqValid: true, status: 200},
		{name: "events document", method: http.MethodGet, target: "/asyncapi.yaml", reqValid: true, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeApp{replay: tt.replay, placeErr: tt.placeErr, getErr: tt.getErr}
			known := fake.seed(t, "c-1", 3)[0]
			if tt.invoiced {
				fake.orders[0].Status, fake.orders[0].InvoiceID = domain.StatusInvoiced, uuid.NewString()
			}
			var app httpapi.App = fake
			if tt.app != nil {
				app = tt.app(fake)
			}
			health := httpkit.Health{Ping: func(context.Context) error { return nil }}
			if tt.health != nil {
				health = *tt.health
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := platform.Handler(log, nil, "", health, httpapi.Routes(app, log, nil))

			target := strings.NewReplacer("{known}", known.ID, "{KNOWN}", strings.ToUpper(known.ID)).Replace(tt.target)
			newReq := func() *http.Request {
				req := httptest.NewRequestWithContext(t.Context(), tt.method, serverURL+target, strings.NewReader(tt.body))
				if tt.contentType != "" {
					req.Header.Set("Content-Type", tt.contentType)
				}
				switch tt.caller {
				case "":
					req.Header.Set(httpkit.ConsumerHeader, "c-1")
				case "-":
				default:
					req.Header.Set(httpkit.ConsumerHeader, tt.caller)
				}
				for k, vs := range tt.header {
					for _, v := range vs {
						req.Header.Add(k, v)
					}
				}
				return req
			}
			op := c.Check(t, h, newReq, tt.reqValid, tt.status)
			cov.Add(op, tt.status)
		})
	}
}

func TestOpenAPI_undocumented_requests_get_problems(t *testing.T) {
	t.Parallel()
	h := newHandler(t, &fakeApp{})
	c := openapitest.Load(t, h, httpapi.OpenAPIContentType)

	tests := []struct {
		name   string
		method string
		target string
		status int
	}{
		{name: "unknown route", method: http.MethodGet, target: "/nope", status: 404},
		{name: "nested below an order", method: http.MethodGet, target: "/orders/" + uuid.NewString() + "/items", status: 404},
		{name: "delete the collection", method: http.MethodDelete, target: "/orders", status: 405},
		{name: "put an order", method: http.MethodPut, target: "/orders/" + uuid.NewString(), status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequestWithContext(t.Context(), tt.method, serverURL+tt.target, nil)
			c.RequireUndocumented(t, req)

			rec := do(t, h, tt.method, tt.target, "", "", nil)
			c.RequireProblem(t, rec, tt.status)
		})
	}
}

// TestOpenAPI_documents_every_route walks the real router: every route it
// serves is in the document and every operation of the document is served.
func TestOpenAPI_documents_every_route(t *testing.T) {
	t.Parallel()
	h := newHandler(t, &fakeApp{})
	c := openapitest.Load(t, h, httpapi.OpenAPIContentType)
	c.AssertServesTheDocument(t, h, undocumentedRoutes...)
	c.AssertSecured(t, h)

	// Kong does not route the operational endpoints (kong/kong.yml), so the
	// document offers them on the service's own server only.
	c.AssertNotOffered(t, kongURL, "/healthz", "/readyz", "/openapi.yaml", "/asyncapi.yaml")
}
