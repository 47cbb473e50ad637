package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/apps/invoices/internal/httpapi"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit/openapitest"
)

// serverURL is the document's server the exchanges are addressed to: the
// router of the document matches requests against its servers.
const serverURL = "http://localhost:3334"

// kongURL is the document's server for the API through Kong.
const kongURL = "http://localhost:8000"

// undocumentedRoutes are served but deliberately not in the document.
var undocumentedRoutes = []string{"/metrics"}

// fakeApp is an in-memory httpapi.App holding one invoice, of customer
// c-1, with the real app's rule: another customer's invoice is not found.
type fakeApp struct {
	invoice   domain.Invoice
	err       error    // returned instead of doing the work
	calls     int      // how often the app was called
	customers []string // the customer of each call
}

var _ httpapi.App = (*fakeApp)(nil)

func newFakeApp() *fakeApp {
	return &fakeApp{invoice: domain.Invoice{
		ID: uuid.NewString(), OrderID: uuid.NewString(), CustomerID: "c-1",
		Amount: 1999, Currency: "EUR", IssuedAt: time.Now().UTC(),
	}}
}

func (f *fakeApp) GetInvoice(_ context.Context, customer, id string) (domain.Invoice, error) {
	f.calls++
	f.customers = append(f.customers, customer)
	if f.err != nil {
		return domain.Invoice{}, f.err
	}
	if id != f.invoice.ID || customer != f.invoice.CustomerID {
		return domain.Invoice{}, domain.ErrInvoiceNotFound
	}
	return f.invoice, nil
}

func (f *fakeApp) InvoicesOfOrder(_ context.Context, customer, orderID string) ([]domain.Invoice, error) {
	f.calls++
	f.customers = append(f.customers, customer)
	if f.err != nil {
		return nil, f.err
	}
	if orderID != f.invoice.OrderID || customer != f.invoice.CustomerID {
		return nil, domain.ErrInvoiceNotFound
	}
	return []domain.Invoice{f.invoice}, nil
}

func newHandler(app httpapi.App, health httpkit.Health) http.Handler {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return platform.Handler(log, nil, "", health, httpapi.Routes(app, log))
}

var alive = httpkit.Health{Ping: func(context.Context) error { return nil }}

// errDBDown is how the store fails while PostgreSQL is out of reach.
var errDBDown = fmt.Errorf("select invoice: %w", syscall.ECONNREFUSED)

func TestOpenAPI_exchanges_match_the_document(t *testing.T) {
	t.Parallel()
	c := openapitest.Load(t, newHandler(newFakeApp(), alive), httpapi.OpenAPIContentType)
	cov := c.Cover(t) // after every exchange: each documented response was produced

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
		caller   string // the X-Consumer-Custom-ID sent: "" is c-1, "-" none
		reqValid bool
		status   int
	}{
		{name: "get", target: "/invoices/{invoice}", header: corr, reqValid: true, status: 200},
		{name: "get by upper-case id", target: "/invoices/{INVOICE}", reqValid: true, status: 200},
		{name: "get unknown", target: "/invoices/" + uuid.NewString(), reqValid: true, status: 404},
		{name: "get another customer's", caller: "c-2", target: "/invoices/{invoice}", reqValid: true, status: 404},
		{name: "get unauthenticated", caller: "-", target: "/invoices/{invoice}", status: 401},
		{name: "get bad id", target: "/invoices/not-a-uuid", reqValid: true, status: 400},
		{name: "get while the database is down", err: errDBDown, target: "/invoices/{invoice}", reqValid: true, status: 503},
		{name: "get fails inside", err: errors.New("boom"), target: "/invoices/{invoice}", reqValid: true, status: 500},

		{name: "list of an order", target: "/invoices?order_id={order}", header: corr, reqValid: true, status: 200},
		{name: "list of an order not invoiced yet", target: "/invoices?order_id=" + uuid.NewString(), reqValid: true, status: 404},
		{name: "list of another customer's order", caller: "c-2", target: "/invoices?order_id={order}", reqValid: true, status: 404},
		{name: "list unauthenticated", caller: "-", target: "/invoices?order_id={order}", status: 401},
		{name: "list with an invalid caller", caller: " ", target: "/invoices?order_id={order}", reqValid: true, status: 401},
		{name: "list while the database is down", err: errDBDown, target: "/invoices?order_id={order}", reqValid: true, status: 503},
		{name: "list fails inside", err: errors.New("boom"), target: "/invoices?order_id={order}", reqValid: true, status: 500},
		{name: "list without order_id", target: "/invoices", status: 400},
		{name: "list with empty order_id", target: "/invoices?order_id=", status: 400},
		{name: "list with bad order_id", target: "/invoices?order_id=42", reqValid: true, status: 400},

		{name: "live", target: "/healthz", reqValid: true, status: 200},
		{name: "ready", target: "/readyz", reqValid: true, status: 200},
		{name: "ready but degraded", health: &degraded, target: "/readyz", reqValid: true, status: 200},
		{name: "not ready", health: &down, target: "/readyz", reqValid: true, status: 503},
		{name: "document", target: "/openapi.yaml", reqValid: true, status: 200},
		{name: "events document", target: "/asyncapi.yaml", reqValid: true, status: 200},
	}
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
			cov.Add(c.Check(t, h, newReq, tt.reqValid, tt.status), tt.status)
		})
	}
}

func TestOpenAPI_undocumented_requests_get_problems(t *testing.T) {
	t.Parallel()
	h := newHandler(newFakeApp(), alive)
	c := openapitest.Load(t, h, httpapi.OpenAPIContentType)

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
			c.RequireUndocumented(t, req)

			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			c.RequireProblem(t, rec, tt.status)
		})
	}
}

// TestOpenAPI_documents_every_route walks the real router: every route it
// serves is in the document and every operation of the document is served.
func TestOpenAPI_documents_every_route(t *testing.T) {
	t.Parallel()
	h := newHandler(newFakeApp(), alive)
	c := openapitest.Load(t, h, httpapi.OpenAPIContentType)
	c.AssertServesTheDocument(t, h, undocumentedRoutes...)
	c.AssertSecured(t, h)

	// Kong does not route the operational endpoints (kong/kong.yml), so the
	// document offers them on the service's own server only.
	c.AssertNotOffered(t, kongURL, "/healthz", "/readyz", "/openapi.yaml", "/asyncapi.yaml")
}
