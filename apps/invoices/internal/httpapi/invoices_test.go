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

func serve(tb testing.TB, app *fakeApp, target string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequestWithContext(tb.Context(), http.MethodGet, target, nil)
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
