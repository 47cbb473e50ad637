package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

// serve GETs target as customer c-1, the fake's invoice's customer.
func serve(tb testing.TB, app *fakeApp, target string) *httptest.ResponseRecorder {
	tb.Helper()
	return serveAs(tb, app, target, http.Header{httpkit.ConsumerHeader: {"c-1"}})
}

// serveAs GETs target with header: httpkit.ConsumerHeader names the caller.
func serveAs(tb testing.TB, app *fakeApp, target string, header http.Header) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequestWithContext(tb.Context(), http.MethodGet, target, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	newHandler(app, alive).ServeHTTP(rec, req)
	return rec
}

func problemOf(tb testing.TB, rec *httptest.ResponseRecorder, status int, code string) httpkit.Problem {
	tb.Helper()
	require.Equal(tb, status, rec.Code, "body: %s", rec.Body.String())
	require.Equal(tb, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
	var p httpkit.Problem
	require.NoError(tb, json.Unmarshal(rec.Body.Bytes(), &p), "body: %s", rec.Body.String())
	assert.Equal(tb, code, p.Code)
	assert.Equal(tb, status, p.Status)
	assert.NotEmpty(tb, p.Detail)
	return p
}

func fieldsOf(p httpkit.Problem) []string {
	var fs []string
	for _, e := range p.Errors {
		fs = append(fs, e.Field)
	}
	return fs
}

// TestInvoices_routes_check_their_query_strings: every route refuses a query
// string that does not parse, parameters it does not take, and parameters
// given twice or empty, with a 400 naming the parameter; the app is not
// called.
func TestInvoices_routes_check_their_query_strings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target string // "{invoice}" and "{order}" stand for the stored invoice's ids
		field  string // "": the problem names no parameter
	}{
		{name: "get: unknown parameter", target: "/invoices/{invoice}?expand=order", field: "expand"},
		{name: "get: malformed escape", target: "/invoices/{invoice}?x=%%%"},
		{name: "get: semicolon", target: "/invoices/{invoice}?a=1;b=2"},
		{name: "get: parameter without value", target: "/invoices/{invoice}?verbose", field: "verbose"},
		{name: "list: without order_id", target: "/invoices", field: "order_id"},
		{name: "list: empty order_id", target: "/invoices?order_id=", field: "order_id"},
		{name: "list: order_id without value", target: "/invoices?order_id", field: "order_id"},
		{name: "list: repeated order_id", target: "/invoices?order_id={order}&order_id={order}", field: "order_id"},
		{name: "list: two order ids", target: "/invoices?order_id={order}&order_id=" + uuid.NewString(), field: "order_id"},
		{name: "list: order_id not a uuid", target: "/invoices?order_id=42", field: "order_id"},
		{name: "list: order_id not utf-8", target: "/invoices?order_id=%FF", field: "order_id"},
		{name: "list: unknown parameter", target: "/invoices?order_id={order}&limit=5", field: "limit"},
		{name: "list: misspelt parameter", target: "/invoices?orderid={order}", field: "orderid"},
		{name: "list: malformed escape", target: "/invoices?order_id={order}&cursor=%%%"},
		{name: "list: truncated escape", target: "/invoices?order_id=%2"},
		{name: "list: semicolon", target: "/invoices?order_id={order};x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := newFakeApp()
			target := strings.NewReplacer("{invoice}", app.invoice.ID, "{order}", app.invoice.OrderID).Replace(tt.target)
			rec := serve(t, app, target)

			p := problemOf(t, rec, http.StatusBadRequest, "invalid_query")
			if tt.field == "" {
				assert.Empty(t, fieldsOf(p))
			} else {
				assert.Equal(t, []string{tt.field}, fieldsOf(p))
			}
			assert.Zero(t, app.calls, "the app must not be called")
		})
	}
}

func TestInvoices_maps_app_errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{name: "database refuses connections", err: fmt.Errorf("select: %w", syscall.ECONNREFUSED), status: 503, code: "unavailable"},
		{name: "database shutting down", err: &pgconn.PgError{Code: "57P01"}, status: 503, code: "unavailable"},
		{name: "unexpected error", err: errors.New("10.0.0.7 said no"), status: 500, code: "internal"},
	}
	for _, tt := range tests {
		for _, route := range []string{"/invoices/{invoice}", "/invoices?order_id={order}"} {
			t.Run(tt.name+" "+route, func(t *testing.T) {
				t.Parallel()
				app := newFakeApp()
				app.err = tt.err
				target := strings.NewReplacer("{invoice}", app.invoice.ID, "{order}", app.invoice.OrderID).Replace(route)
				rec := serve(t, app, target)

				problemOf(t, rec, tt.status, tt.code)
				assert.NotContains(t, rec.Body.String(), "10.0.0.7")
				if tt.status == http.StatusServiceUnavailable {
					assert.Equal(t, "2", rec.Header().Get("Retry-After"))
				} else {
					assert.Empty(t, rec.Header().Values("Retry-After"))
				}
			})
		}
	}
}

// TestInvoices_need_an_authenticated_caller: without Kong's
// X-Consumer-Custom-ID, or with one that is not a customer id, every API
// route answers 401 before it reads its input; the probes and documents
// stay open.
func TestInvoices_need_an_authenticated_caller(t *testing.T) {
	t.Parallel()
	routes := []string{"/invoices/{invoice}", "/invoices?order_id={order}", "/invoices", "/invoices/not-a-uuid", "/invoices?bogus"}
	headers := map[string]http.Header{
		"no header":   {},
		"empty":       {httpkit.ConsumerHeader: {""}},
		"blank":       {httpkit.ConsumerHeader: {" "}},
		"too long":    {httpkit.ConsumerHeader: {strings.Repeat("c", 65)}},
		"two callers": {httpkit.ConsumerHeader: {"c-1", "c-2"}},
	}
	for _, route := range routes {
		for name, header := range headers {
			t.Run(route+" "+name, func(t *testing.T) {
				t.Parallel()
				app := newFakeApp()
				target := strings.NewReplacer("{invoice}", app.invoice.ID, "{order}", app.invoice.OrderID).Replace(route)
				rec := serveAs(t, app, target, header.Clone())

				problemOf(t, rec, http.StatusUnauthorized, "unauthenticated")
				assert.Equal(t, `Key realm="orderflow"`, rec.Header().Get("WWW-Authenticate"))
				assert.NotContains(t, rec.Body.String(), `"amount"`)
				assert.Zero(t, app.calls, "the app must not be called")
			})
		}
	}
	for _, target := range []string{"/healthz", "/readyz", "/openapi.yaml", "/asyncapi.yaml"} {
		t.Run("open "+target, func(t *testing.T) {
			t.Parallel()
			rec := serveAs(t, newFakeApp(), target, http.Header{})
			assert.Equal(t, http.StatusOK, rec.Code)
		})
	}
}

// TestInvoices_of_another_customer_are_not_found: another customer's
// invoice, and the invoices of another customer's order, get the answer an
// unknown id gets; the app is asked for the caller's.
func TestInvoices_of_another_customer_are_not_found(t *testing.T) {
	t.Parallel()
	for _, route := range []string{"/invoices/{id}", "/invoices?order_id={id}"} {
		t.Run(route, func(t *testing.T) {
			t.Parallel()
			app := newFakeApp()
			id := app.invoice.ID
			if strings.Contains(route, "order_id") {
				id = app.invoice.OrderID
			}
			mine := serveAs(t, app, strings.ReplaceAll(route, "{id}", id), http.Header{httpkit.ConsumerHeader: {"c-1"}})
			require.Equal(t, http.StatusOK, mine.Code, "body: %s", mine.Body.String())
			assert.Contains(t, mine.Body.String(), app.invoice.ID)

			other := serveAs(t, app, strings.ReplaceAll(route, "{id}", id), http.Header{httpkit.ConsumerHeader: {"c-2"}})
			unknown := serveAs(t, app, strings.ReplaceAll(route, "{id}", uuid.NewString()), http.Header{httpkit.ConsumerHeader: {"c-2"}})
			pOther := problemOf(t, other, http.StatusNotFound, "invoice_not_found")
			pUnknown := problemOf(t, unknown, http.StatusNotFound, "invoice_not_found")
			pOther.Instance, pUnknown.Instance = "", ""
			assert.Equal(t, pUnknown, pOther, "the same answer")
			assert.NotContains(t, other.Body.String(), `"amount"`, "nothing of the invoice")
			assert.NotContains(t, other.Body.String(), "c-1")
			assert.Equal(t, []string{"c-1", "c-2", "c-2"}, app.customers)
		})
	}
}
