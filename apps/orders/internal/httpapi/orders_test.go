package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ordersapp "github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/platform"
)

// fakeApp is an in-memory httpapi.App. Like the real app it validates the
// new order first, so validation errors reach the API as they do in
// production. Every test builds its own.
type fakeApp struct {
	mu sync.Mutex
	// orders, newest first, as the store lists them.
	orders []domain.Order
	// replay makes PlaceOrder report created=false.
	replay bool
	// placeErr, getErr and listErr are returned instead of doing the work.
	placeErr, getErr, listErr error
	// Recorded calls.
	keys    []string
	queries []ordersapp.ListQuery
	gets    []string // the customer of each GetOrder
}

var _ httpapi.App = (*fakeApp)(nil)

func (f *fakeApp) PlaceOrder(_ context.Context, n domain.NewOrder, key string) (domain.Order, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	if err := n.Validate(); err != nil {
		return domain.Order{}, false, err
	}
	if f.placeErr != nil {
		return domain.Order{}, false, f.placeErr
	}
	now := time.Now().UTC()
	o := domain.Order{
		ID: uuid.Must(uuid.NewV7()).String(), CustomerID: *n.CustomerID, Amount: *n.Amount, Currency: *n.Currency,
		Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
	}
	f.orders = append([]domain.Order{o}, f.orders...)
	return o, !f.replay, nil
}

// GetOrder has the real app's rule: another customer's order is not found.
func (f *fakeApp) GetOrder(_ context.Context, customer, id string) (domain.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, customer)
	if f.getErr != nil {
		return domain.Order{}, f.getErr
	}
	for _, o := range f.orders {
		if o.ID == id && o.CustomerID == customer {
			return o, nil
		}
	}
	return domain.Order{}, domain.ErrOrderNotFound
}

func (f *fakeApp) ListOrders(_ context.Context, q ordersapp.ListQuery) ([]domain.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []domain.Order
	for _, o := range f.orders {
		if q.CustomerID != "" && o.CustomerID != q.CustomerID {
			continue
		}
		if q.After != "" && o.ID >= q.After {
			continue
		}
		if len(out) == q.Limit {
			break
		}
		out = append(out, o)
	}
	return out, nil
}

func (f *fakeApp) placedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.orders)
}

func (f *fakeApp) recordedQueries() []ordersapp.ListQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

// seed stores n orders of customer, newest first, and returns them.
func (f *fakeApp) seed(tb testing.TB, customer string, n int) []domain.Order {
	tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		now := time.Now().UTC()
		o := domain.Order{
			ID: uuid.Must(uuid.NewV7()).String(), CustomerID: customer, Amount: 100, Currency: "EUR",
			Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
		}
		f.orders = append([]domain.Order{o}, f.orders...)
	}
	return slices.Clone(f.orders)
}

func newHandler(tb testing.TB, app httpapi.App) http.Handler {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	health := httpkit.Health{Ping: func(context.Context) error { return nil }}
	return platform.Handler(log, nil, "", health, httpapi.Routes(app, log, nil))
}

// caller is the customer the tests' requests come from unless they say
// otherwise, as Kong names it in httpkit.ConsumerHeader.
const caller = "c-1"

// anonymous is a header without httpkit.ConsumerHeader: a request that did
// not come through Kong's authentication.
func anonymous() http.Header { return http.Header{consumerKey: nil} }

// as is a header naming customer as the caller.
func as(customer string) http.Header { return http.Header{consumerKey: {customer}} }

// consumerKey is httpkit.ConsumerHeader as http.Header keys it.
var consumerKey = http.CanonicalHeaderKey(httpkit.ConsumerHeader)

// do serves one request in memory. A non-empty contentType sets the header.
// The request comes from caller unless header sets httpkit.ConsumerHeader
// (to nil: from nobody).
func do(tb testing.TB, h http.Handler, method, target, contentType, body string, header http.Header) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequestWithContext(tb.Context(), method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if _, ok := header[consumerKey]; !ok {
		req.Header.Set(httpkit.ConsumerHeader, caller)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// problemOf checks that rec is a problem document with status and code and
// returns it.
func problemOf(tb testing.TB, rec *httptest.ResponseRecorder, status int, code string) httpkit.Problem {
	tb.Helper()
	require.Equal(tb, status, rec.Code, "body: %s", rec.Body.String())
	require.Equal(tb, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
	var p httpkit.Problem
	require.NoError(tb, json.Unmarshal(rec.Body.Bytes(), &p), "body: %s", rec.Body.String())
	assert.Equal(tb, code, p.Code)
	assert.Equal(tb, status, p.Status)
	assert.Equal(tb, "urn:orderflow:problem:"+code, p.Type)
	assert.NotEmpty(tb, p.Title)
	return p
}

type orderBody struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	InvoiceID  string    `json:"invoice_id"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

type listBody struct {
	Items      []orderBody `json:"items"`
	NextCursor string      `json:"next_cursor"`
}

func decodeJSON[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	require.Equal(tb, "application/json", rec.Header().Get("Content-Type"))
	var v T
	require.NoError(tb, json.Unmarshal(rec.Body.Bytes(), &v), "body: %s", rec.Body.String())
	return v
}

func fieldsOf(p httpkit.Problem) []string {
	var fs []string
	for _, e := range p.Errors {
		fs = append(fs, e.Field)
	}
	return fs
}

const validBody = `{"customer_id":"c-1","amount":1999,"currency":"EUR"}`

func TestOrders_PlaceOrder_rejects_bad_bodies(t *testing.T) {
	t.Parallel()
	const jsonType = "application/json"
	oversize := `{"customer_id":"` + strings.Repeat("x", httpkit.MaxBodyBytes) + `","amount":1,"currency":"EUR"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		fields      []string // field errors expected in the problem, in order
	}{
		{name: "malformed json", contentType: jsonType, body: `{"customer_id": "c-1",`, status: 400, code: "malformed_json"},
		{name: "bare word", contentType: jsonType, body: `{"customer_id": c}`, status: 400, code: "malformed_json"},
		{name: "single quotes", contentType: jsonType, body: `{'customer_id':'c'}`, status: 400, code: "malformed_json"},
		{name: "empty body", contentType: jsonType, body: ``, status: 400, code: "empty_body"},
		{name: "whitespace body", contentType: jsonType, body: " \n\t ", status: 400, code: "empty_body"},
		{name: "amount as string", contentType: jsonType, body: `{"customer_id":"c-1","amount":"100","currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "customer_id as number", contentType: jsonType, body: `{"customer_id":42,"amount":100,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"customer_id"}},
		{name: "currency as object", contentType: jsonType, body: `{"customer_id":"c","amount":100,"currency":{}}`, status: 422, code: "invalid_field", fields: []string{"currency"}},
		{name: "amount as bool", contentType: jsonType, body: `{"customer_id":"c","amount":true,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "fractional amount", contentType: jsonType, body: `{"customer_id":"c-1","amount":12.5,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "amount 1e30", contentType: jsonType, body: `{"customer_id":"c-1","amount":1e30,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "amount overflows int64", contentType: jsonType, body: `{"customer_id":"c-1","amount":99999999999999999999,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "amount underflows int64", contentType: jsonType, body: `{"customer_id":"c-1","amount":-99999999999999999999,"currency":"EUR"}`, status: 422, code: "invalid_field", fields: []string{"amount"}},
		{name: "unknown field", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"EUR","discount":5}`, status: 422, code: "unknown_field", fields: []string{"discount"}},
		{name: "trailing object", contentType: jsonType, body: validBody + validBody, status: 400, code: "malformed_json"},
		{name: "trailing garbage", contentType: jsonType, body: validBody + ` x`, status: 400, code: "malformed_json"},
		{name: "trailing array", contentType: jsonType, body: validBody + "\n[]", status: 400, code: "malformed_json"},
		{name: "oversize body", contentType: jsonType, body: oversize, status: 413, code: "body_too_large"},
		{name: "customer_id not utf-8", contentType: jsonType, body: "{\"customer_id\":\"c-\xff\",\"amount\":1,\"currency\":\"EUR\"}", status: 400, code: "invalid_utf8", fields: []string{"customer_id"}},
		{name: "customer_id latin-1", contentType: jsonType, body: "{\"customer_id\":\"Jos\xe9\",\"amount\":1,\"currency\":\"EUR\"}", status: 400, code: "invalid_utf8", fields: []string{"customer_id"}},
		{name: "currency not utf-8", contentType: jsonType, body: "{\"customer_id\":\"c-1\",\"amount\":1,\"currency\":\"EU\xc3\"}", status: 400, code: "invalid_utf8", fields: []string{"currency"}},
		{name: "customer_id lone surrogate escape", contentType: jsonType, body: `{"customer_id":"c-\ud800","amount":1,"currency":"EUR"}`, status: 400, code: "invalid_utf8", fields: []string{"customer_id"}},
		{name: "key not utf-8", contentType: jsonType, body: "{\"customer_id\xff\":\"c\",\"amount\":1,\"currency\":\"EUR\"}", status: 400, code: "invalid_utf8"},
		{name: "oversize whitespace", contentType: jsonType, body: validBody + strings.Repeat(" ", httpkit.MaxBodyBytes), status: 413, code: "body_too_large"},
		{name: "unknown currency", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"ABC"}`, status: 422, code: "invalid_order", fields: []string{"currency"}},
		{name: "lowercase currency", contentType: jsonType, body: `{"customer_id":"c-1","amount":1,"currency":"eur"}`, status: 422, code: "invalid_order", fields: []string{"currency"}},
		{name: "empty object", contentType: jsonType, body: `{}`, status: 422, code: "invalid_order", fields: []string{"amount", "currency"}},
		{name: "null body", contentType: jsonType, body: `null`, status: 422, code: "invalid_order", fields: []string{"amount", "currency"}},
		{name: "null amount", contentType: jsonType, body: `{"customer_id":"c-1","amount":null,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"amount"}},
		{name: "missing amount", contentType: jsonType, body: `{"customer_id":"c-1","currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"amount"}},
		{name: "blank customer_id", contentType: jsonType, body: `{"customer_id":"  ","amount":1,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"customer_id"}},
		{name: "customer_id too long", contentType: jsonType, body: `{"customer_id":"` + strings.Repeat("c", 65) + `","amount":1,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"customer_id"}},
		{name: "customer_id invalid and amount zero", contentType: jsonType, body: `{"customer_id":"","amount":0,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"customer_id", "amount"}},
		{name: "amount zero", contentType: jsonType, body: `{"customer_id":"c-1","amount":0,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"amount"}},
		{name: "amount negative", contentType: jsonType, body: `{"customer_id":"c-1","amount":-1,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"amount"}},
		{name: "amount over 10^12", contentType: jsonType, body: `{"customer_id":"c-1","amount":1000000000001,"currency":"EUR"}`, status: 422, code: "invalid_order", fields: []string{"amount"}},
		{name: "text/plain", contentType: "text/plain", body: validBody, status: 415, code: "unsupported_media_type"},
		{name: "no content type", contentType: "", body: validBody, status: 415, code: "unsupported_media_type"},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `amount=1`, status: 415, code: "unsupported_media_type"},
		{name: "unparsable content type", contentType: "application/json; charset", body: validBody, status: 415, code: "unsupported_media_type"},
		{name: "json array", contentType: jsonType, body: `[` + validBody + `]`, status: 400, code: "malformed_json"},
		{name: "json string", contentType: jsonType, body: `"order"`, status: 400, code: "malformed_json"},
		{name: "json number", contentType: jsonType, body: `42`, status: 400, code: "malformed_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{}
			rec := do(t, newHandler(t, app), http.MethodPost, "/orders", tt.contentType, tt.body, nil)

			p := problemOf(t, rec, tt.status, tt.code)
			assert.Less(t, rec.Code, 500)
			assert.NotEmpty(t, p.Detail)
			assert.Equal(t, "/orders", p.Instance)
			assert.Equal(t, tt.fields, fieldsOf(p))
			assert.Empty(t, rec.Header().Get("Location"))
			assert.Zero(t, app.placedCount(), "no order may be placed")
		})
	}
}

func TestOrders_PlaceOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		key         string // Idempotency-Key; none when empty
		replay      bool
		status      int
	}{
		{name: "created", contentType: "application/json", status: http.StatusCreated},
		{name: "charset parameter", contentType: "application/json; charset=utf-8", status: http.StatusCreated},
		{name: "with idempotency key", contentType: "application/json", key: "key-1", status: http.StatusCreated},
		{name: "idempotent replay", contentType: "application/json", key: "key-1", replay: true, status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{replay: tt.replay}
			header := http.Header{}
			if tt.key != "" {
				header.Set(httpapi.IdempotencyKeyHeader, tt.key)
			}
			rec := do(t, newHandler(t, app), http.MethodPost, "/orders", tt.contentType, validBody, header)

			require.Equal(t, tt.status, rec.Code, "body: %s", rec.Body.String())
			got := decodeJSON[orderBody](t, rec)
			_, err := uuid.Parse(got.ID)
			require.NoError(t, err)
			assert.Equal(t, "/orders/"+got.ID, rec.Header().Get("Location"))
			assert.Equal(t, "c-1", got.CustomerID)
			assert.Equal(t, int64(1999), got.Amount)
			assert.Equal(t, "EUR", got.Currency)
			assert.Equal(t, "pending", got.Status)
			assert.Empty(t, got.InvoiceID)
			assert.False(t, got.CreatedAt.IsZero())
			if tt.replay {
				assert.Equal(t, "true", rec.Header().Get("Idempotent-Replayed"))
			} else {
				assert.Empty(t, rec.Header().Values("Idempotent-Replayed"))
			}
			assert.Equal(t, []string{tt.key}, app.keys, "the key reaches the app unchanged")
		})
	}
}

func TestOrders_PlaceOrder_maps_app_errors(t *testing.T) {
	t.Parallel()
	secret := errors.New("pq: connection refused to 10.0.0.7")
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{name: "idempotency key reused", err: domain.ErrIdempotencyKeyReused, status: 422, code: "idempotency_key_reused"},
		{name: "wrapped key reused", err: errors.Join(errors.New("tx"), domain.ErrIdempotencyKeyReused), status: 422, code: "idempotency_key_reused"},
		{name: "unexpected error", err: secret, status: 500, code: "internal"},
		{name: "database refuses connections", err: fmt.Errorf("place order: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), status: 503, code: "unavailable"},
		{name: "database shutting down", err: fmt.Errorf("place order: %w", &pgconn.PgError{Code: "57P01", Message: "10.0.0.7 terminating"}), status: 503, code: "unavailable"},
		{name: "database starting up", err: &pgconn.PgError{Code: "57P03"}, status: 503, code: "unavailable"},
		{name: "connection exception", err: &pgconn.PgError{Code: "08006"}, status: 503, code: "unavailable"},
		{name: "a statement's own error", err: &pgconn.PgError{Code: "42P01", Message: "10.0.0.7"}, status: 500, code: "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{placeErr: tt.err}
			header := http.Header{httpapi.IdempotencyKeyHeader: {"key-1"}}
			rec := do(t, newHandler(t, app), http.MethodPost, "/orders", "application/json", validBody, header)

			problemOf(t, rec, tt.status, tt.code)
			assert.NotContains(t, rec.Body.String(), "10.0.0.7", "internal errors must not leak")
			assert.Empty(t, rec.Header().Get("Location"))
			if tt.status == http.StatusServiceUnavailable {
				assert.Equal(t, "2", rec.Header().Get("Retry-After"))
			} else {
				assert.Empty(t, rec.Header().Values("Retry-After"))
			}
		})
	}
}

func TestOrders_PlaceOrder_rejects_bad_idempotency_keys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
	}{
		{name: "too long", key: strings.Repeat("k", 300)},
		{name: "256 chars", key: strings.Repeat("k", 256)},
		{name: "empty", key: ""},
		{name: "non-ascii", key: "ключ"},
		{name: "control character", key: "key\x01"},
		{name: "delete character", key: "key\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{}
			header := http.Header{httpapi.IdempotencyKeyHeader: {tt.key}}
			rec := do(t, newHandler(t, app), http.MethodPost, "/orders", "application/json", validBody, header)

			problemOf(t, rec, http.StatusBadRequest, "invalid_idempotency_key")
			assert.Empty(t, app.keys, "the app must not be called")
		})
	}

	t.Run("255 chars are accepted", func(t *testing.T) {
		t.Parallel()
		app := &fakeApp{}
		key := strings.Repeat("k", 255)
		header := http.Header{httpapi.IdempotencyKeyHeader: {key}}
		rec := do(t, newHandler(t, app), http.MethodPost, "/orders", "application/json", validBody, header)

		require.Equal(t, http.StatusCreated, rec.Code, "body: %s", rec.Body.String())
		assert.Equal(t, []string{key}, app.keys)
	})
}

func TestOrders_GetOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   func(known domain.Order) string
		getErr error
		status int
		code   string // problem code; empty for success
	}{
		{name: "found", path: func(o domain.Order) string { return "/orders/" + o.ID }, status: 200},
		{name: "found by upper-case id", path: func(o domain.Order) string { return "/orders/" + strings.ToUpper(o.ID) }, status: 200},
		{name: "not a uuid", path: func(domain.Order) string { return "/orders/not-a-uuid" }, status: 400, code: "invalid_id"},
		{name: "sql injection", path: func(domain.Order) string { return "/orders/1%27%20OR%201=1" }, status: 400, code: "invalid_id"},
		{name: "truncated uuid", path: func(o domain.Order) string { return "/orders/" + o.ID[:35] }, status: 400, code: "invalid_id"},
		{name: "unknown id", path: func(domain.Order) string { return "/orders/" + uuid.NewString() }, status: 404, code: "order_not_found"},
		{name: "store failure", path: func(o domain.Order) string { return "/orders/" + o.ID }, getErr: errors.New("boom"), status: 500, code: "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{getErr: tt.getErr}
			known := app.seed(t, "c-1", 1)[0]
			rec := do(t, newHandler(t, app), http.MethodGet, tt.path(known), "", "", nil)

			if tt.code != "" {
				problemOf(t, rec, tt.status, tt.code)
				return
			}
			require.Equal(t, tt.status, rec.Code, "body: %s", rec.Body.String())
			got := decodeJSON[orderBody](t, rec)
			assert.Equal(t, known.ID, got.ID)
			assert.Equal(t, known.CustomerID, got.CustomerID)
			assert.Equal(t, known.Amount, got.Amount)
			assert.Equal(t, known.Currency, got.Currency)
			assert.Equal(t, string(known.Status), got.Status)
			assert.True(t, known.CreatedAt.Equal(got.CreatedAt))
		})
	}
}

func TestOrders_ListOrders_rejects_bad_queries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		query string
		field string
	}{
		{name: "limit zero", query: "limit=0", field: "limit"},
		{name: "limit over max", query: "limit=101", field: "limit"},
		{name: "limit negative", query: "limit=-1", field: "limit"},
		{name: "limit not a number", query: "limit=abc", field: "limit"},
		{name: "limit fraction", query: "limit=1.5", field: "limit"},
		{name: "limit huge", query: "limit=99999999999999999999", field: "limit"},
		{name: "cursor not base64", query: "cursor=!!!", field: "cursor"},
		{name: "cursor not a uuid", query: "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("not-a-uuid")), field: "cursor"},
		{name: "cursor raw uuid", query: "cursor=" + uuid.NewString(), field: "cursor"},
		{name: "malformed escape", query: "customer_id=c&cursor=%%%"},
		{name: "truncated escape", query: "customer_id=c%2"},
		{name: "semicolon separator", query: "customer_id=c;limit=2"},
		{name: "unknown parameter", query: "customer_id=c&status=pending", field: "status"},
		{name: "misspelt parameter", query: "customerid=c", field: "customerid"},
		{name: "empty parameter name", query: "=c", field: `""`},
		{name: "repeated customer_id", query: "customer_id=c&customer_id=d", field: "customer_id"},
		{name: "repeated limit", query: "limit=2&limit=2", field: "limit"},
		{name: "empty customer_id", query: "customer_id=", field: "customer_id"},
		{name: "customer_id without value", query: "customer_id", field: "customer_id"},
		{name: "empty limit", query: "customer_id=c&limit=", field: "limit"},
		{name: "empty cursor", query: "cursor=", field: "cursor"},
		{name: "customer_id not utf-8", query: "customer_id=%FF", field: "customer_id"},
		{name: "parameter name not utf-8", query: "%FF=c", field: `"\xff"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{}
			rec := do(t, newHandler(t, app), http.MethodGet, "/orders?"+tt.query, "", "", nil)

			p := problemOf(t, rec, http.StatusBadRequest, "invalid_query")
			assert.NotEmpty(t, p.Detail)
			if tt.field == "" { // the query string does not parse
				assert.Empty(t, fieldsOf(p))
			} else {
				assert.Equal(t, []string{tt.field}, fieldsOf(p))
			}
			assert.Empty(t, app.recordedQueries(), "the app must not be called")
		})
	}
}

// TestOrders_routes_check_their_query_strings holds every route to the same
// rules: a query string that does not parse, a parameter the route does not
// take, one given twice or empty is a 400, and the app is not called.
func TestOrders_routes_check_their_query_strings(t *testing.T) {
	t.Parallel()
	routes := []struct {
		method, path, contentType, body string
	}{
		{method: http.MethodPost, path: "/orders", contentType: "application/json", body: validBody},
		{method: http.MethodGet, path: "/orders/{known}"},
		{method: http.MethodGet, path: "/orders"},
	}
	queries := []struct {
		name, query, field string
	}{
		{name: "malformed escape", query: "x=%%%"},
		{name: "semicolon", query: "a=1;b=2"},
		{name: "unknown parameter", query: "verbose=1", field: "verbose"},
		{name: "unknown empty parameter", query: "verbose", field: "verbose"},
		{name: "repeated unknown parameter", query: "x=1&x=2", field: "x"},
	}
	for _, rt := range routes {
		for _, q := range queries {
			t.Run(rt.method+" "+rt.path+" "+q.name, func(t *testing.T) {
				t.Parallel()
				app := &fakeApp{getErr: errors.New("the app must not be called")}
				known := app.seed(t, "c-1", 1)[0]
				target := strings.ReplaceAll(rt.path, "{known}", known.ID) + "?" + q.query
				rec := do(t, newHandler(t, app), rt.method, target, rt.contentType, rt.body, nil)

				p := problemOf(t, rec, http.StatusBadRequest, "invalid_query")
				if q.field == "" {
					assert.Empty(t, fieldsOf(p))
				} else {
					assert.Equal(t, []string{q.field}, fieldsOf(p))
				}
				assert.Equal(t, 1, app.placedCount(), "no order may be placed")
				assert.Empty(t, app.keys)
				assert.Empty(t, app.recordedQueries())
			})
		}
	}
}

func TestOrders_ListOrders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		query     string
		seed      int
		wantQuery ordersapp.ListQuery
		wantItems int
		cursor    bool
	}{
		{name: "defaults", query: "", seed: 3, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: httpapi.DefaultLimit}, wantItems: 3},
		{name: "empty", query: "", seed: 0, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: httpapi.DefaultLimit}, wantItems: 0},
		{name: "own customer_id", query: "customer_id=" + caller, seed: 3, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: httpapi.DefaultLimit}, wantItems: 3},
		{name: "max limit", query: "limit=100", seed: 2, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: httpapi.MaxLimit}, wantItems: 2},
		{name: "full page has a cursor", query: "limit=2", seed: 2, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: 2}, wantItems: 2, cursor: true},
		{name: "short page has none", query: "limit=3", seed: 2, wantQuery: ordersapp.ListQuery{CustomerID: caller, Limit: 3}, wantItems: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{}
			app.seed(t, "c-1", tt.seed)
			rec := do(t, newHandler(t, app), http.MethodGet, "/orders?"+tt.query, "", "", nil)

			require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
			assert.NotContains(t, rec.Body.String(), `"items":null`)
			got := decodeJSON[listBody](t, rec)
			assert.Len(t, got.Items, tt.wantItems)
			assert.Equal(t, tt.cursor, got.NextCursor != "", "next_cursor %q", got.NextCursor)
			assert.Equal(t, []ordersapp.ListQuery{tt.wantQuery}, app.recordedQueries())
		})
	}
}

func TestOrders_ListOrders_pages_with_next_cursor(t *testing.T) {
	t.Parallel()
	app := &fakeApp{}
	app.seed(t, "c-2", 2)
	all := app.seed(t, "c-1", 5) // newest first, c-2's among them
	var want []string
	for _, o := range all {
		if o.CustomerID == "c-1" {
			want = append(want, o.ID)
		}
	}
	h := newHandler(t, app)

	var got []string
	var cursors []string
	target := "/orders?customer_id=c-1&limit=2"
	for page := 0; ; page++ {
		require.Less(t, page, 10, "pagination does not end")
		rec := do(t, h, http.MethodGet, target, "", "", nil)
		require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
		body := decodeJSON[listBody](t, rec)
		for _, it := range body.Items {
			got = append(got, it.ID)
		}
		if body.NextCursor == "" {
			break
		}
		cursors = append(cursors, body.NextCursor)
		target = "/orders?customer_id=c-1&limit=2&cursor=" + body.NextCursor
	}

	assert.Equal(t, want, got, "every order once, newest first")
	require.Len(t, cursors, 2)
	queries := app.recordedQueries()
	require.Len(t, queries, 3)
	assert.Equal(t, ordersapp.ListQuery{CustomerID: "c-1", Limit: 2}, queries[0])
	assert.Equal(t, ordersapp.ListQuery{CustomerID: "c-1", Limit: 2, After: want[1]}, queries[1], "the cursor is the last id of the page")
	assert.Equal(t, ordersapp.ListQuery{CustomerID: "c-1", Limit: 2, After: want[3]}, queries[2])
}

func TestOrders_routing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		target string
		status int
		code   string
	}{
		{name: "unknown route", method: http.MethodGet, target: "/nope", status: 404, code: "route_not_found"},
		{name: "unknown nested route", method: http.MethodGet, target: "/orders/" + uuid.NewString() + "/items", status: 404, code: "route_not_found"},
		{name: "delete collection", method: http.MethodDelete, target: "/orders", status: 405, code: "method_not_allowed"},
		{name: "put order", method: http.MethodPut, target: "/orders/" + uuid.NewString(), status: 405, code: "method_not_allowed"},
		{name: "post order", method: http.MethodPost, target: "/orders/" + uuid.NewString(), status: 405, code: "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, newHandler(t, &fakeApp{}), tt.method, tt.target, "application/json", validBody, nil)
			problemOf(t, rec, tt.status, tt.code)
		})
	}
}

func TestOrders_correlation_id(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		target string
		given  string // X-Correlation-ID sent; none when empty
		echoed bool   // whether the given id comes back, else a new UUID
	}{
		{name: "echoed", method: http.MethodGet, target: "/orders", given: "corr-123", echoed: true},
		{name: "echoed on problem", method: http.MethodGet, target: "/orders/bad", given: "corr-456", echoed: true},
		{name: "echoed on 404", method: http.MethodGet, target: "/nope", given: "corr-789", echoed: true},
		{name: "generated when absent", method: http.MethodGet, target: "/orders"},
		{name: "generated on problem", method: http.MethodPost, target: "/orders"},
		{name: "replaced when too long", method: http.MethodGet, target: "/orders", given: strings.Repeat("c", 129)},
		{name: "replaced when it has spaces", method: http.MethodGet, target: "/orders", given: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			header := http.Header{}
			if tt.given != "" {
				header.Set(observability.CorrelationHeader, tt.given)
			}
			rec := do(t, newHandler(t, &fakeApp{}), tt.method, tt.target, "", "", header)

			got := rec.Header().Get(observability.CorrelationHeader)
			if tt.echoed {
				assert.Equal(t, tt.given, got)
				return
			}
			_, err := uuid.Parse(got)
			assert.NoError(t, err, "generated correlation id %q", got)
		})
	}
}

func TestOrders_method_not_allowed_lists_allowed_methods(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		target string
		allow  []string
	}{
		{name: "collection", method: http.MethodDelete, target: "/orders", allow: []string{"GET", "POST"}},
		{name: "item", method: http.MethodPut, target: "/orders/" + uuid.NewString(), allow: []string{"GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, newHandler(t, &fakeApp{}), tt.method, tt.target, "", "", nil)

			problemOf(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
			got := strings.Split(strings.Join(rec.Header().Values("Allow"), ","), ",")
			for i := range got {
				got[i] = strings.TrimSpace(got[i])
			}
			slices.Sort(got)
			assert.Equal(t, tt.allow, got, "RFC 9110 15.5.6: a 405 must carry Allow")
		})
	}
}

// TestOrders_need_an_authenticated_caller: a request without Kong's
// X-Consumer-Custom-ID, or with one that is not a customer id, is a 401
// before anything reads its input, on every API route; the probes and the
// documents stay open.
func TestOrders_need_an_authenticated_caller(t *testing.T) {
	t.Parallel()
	routes := []struct {
		method, target, contentType, body string
	}{
		{method: http.MethodPost, target: "/orders", contentType: "application/json", body: validBody},
		{method: http.MethodPost, target: "/orders", contentType: "text/plain", body: "not even json"},
		{method: http.MethodGet, target: "/orders"},
		{method: http.MethodGet, target: "/orders?customer_id=c-1"},
		{method: http.MethodGet, target: "/orders?bogus=1"},
		{method: http.MethodGet, target: "/orders/{known}"},
		{method: http.MethodGet, target: "/orders/not-a-uuid"},
	}
	headers := []struct {
		name   string
		header http.Header
	}{
		{name: "no header", header: anonymous()},
		{name: "empty", header: as("")},
		{name: "blank", header: as("   ")},
		{name: "too long", header: as(strings.Repeat("c", 65))},
		{name: "control character", header: as("c-1\x00")},
		{name: "two callers", header: http.Header{consumerKey: {"c-1", "c-2"}}},
	}
	for _, rt := range routes {
		for _, hd := range headers {
			t.Run(rt.method+" "+rt.target+" "+hd.name, func(t *testing.T) {
				t.Parallel()
				app := &fakeApp{}
				known := app.seed(t, caller, 1)[0]
				target := strings.ReplaceAll(rt.target, "{known}", known.ID)
				rec := do(t, newHandler(t, app), rt.method, target, rt.contentType, rt.body, hd.header)

				p := problemOf(t, rec, http.StatusUnauthorized, "unauthenticated")
				assert.NotEmpty(t, p.Detail)
				assert.Equal(t, `Key realm="orderflow"`, rec.Header().Get("WWW-Authenticate"))
				assert.NotContains(t, rec.Body.String(), `"amount"`, "nothing of the order")
				assert.Equal(t, 1, app.placedCount(), "no order may be placed")
				assert.Empty(t, app.keys)
				assert.Empty(t, app.recordedQueries())
				assert.Empty(t, app.gets)
			})
		}
	}
	for _, target := range []string{"/healthz", "/readyz", "/openapi.yaml", "/asyncapi.yaml"} {
		t.Run("open "+target, func(t *testing.T) {
			t.Parallel()
			rec := do(t, newHandler(t, &fakeApp{}), http.MethodGet, target, "", "", anonymous())
			assert.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
		})
	}
}

// TestOrders_PlaceOrder_is_for_the_caller: the order is the caller's, and
// customer_id in the body may only repeat the caller's id.
func TestOrders_PlaceOrder_is_for_the_caller(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{name: "without customer_id", body: `{"amount":1999,"currency":"EUR"}`, status: http.StatusCreated},
		{name: "with the caller's customer_id", body: `{"customer_id":"c-2","amount":1999,"currency":"EUR"}`, status: http.StatusCreated},
		{name: "with another customer_id", body: `{"customer_id":"c-1","amount":1999,"currency":"EUR"}`, status: http.StatusForbidden},
		{name: "with another customer_id and a bad amount", body: `{"customer_id":"c-1","amount":0,"currency":"EUR"}`, status: http.StatusForbidden},
		{name: "with a differently cased customer_id", body: `{"customer_id":"C-2","amount":1999,"currency":"EUR"}`, status: http.StatusForbidden},
		{name: "with an empty customer_id", body: `{"customer_id":"","amount":1999,"currency":"EUR"}`, status: http.StatusUnprocessableEntity},
		{name: "with a null customer_id", body: `{"customer_id":null,"amount":1999,"currency":"EUR"}`, status: http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := &fakeApp{}
			header := as("c-2")
			header.Set(httpapi.IdempotencyKeyHeader, "key-1")
			rec := do(t, newHandler(t, app), http.MethodPost, "/orders", "application/json", tt.body, header)

			if tt.status == http.StatusUnprocessableEntity {
				p := problemOf(t, rec, tt.status, "invalid_order")
				assert.Equal(t, []string{"customer_id"}, fieldsOf(p), "not a customer id at all")
				assert.Zero(t, app.placedCount())
				return
			}
			if tt.status == http.StatusForbidden {
				p := problemOf(t, rec, http.StatusForbidden, "customer_mismatch")
				assert.Equal(t, []string{"customer_id"}, fieldsOf(p))
				assert.Empty(t, rec.Header().Get("Location"))
				assert.Zero(t, app.placedCount(), "no order may be placed")
				assert.Empty(t, app.keys, "the app is not called")
				return
			}
			require.Equal(t, tt.status, rec.Code, "body: %s", rec.Body.String())
			got := decodeJSON[orderBody](t, rec)
			assert.Equal(t, "c-2", got.CustomerID, "the caller's order")
			require.Len(t, app.orders, 1)
			assert.Equal(t, "c-2", app.orders[0].CustomerID)
		})
	}
}

// TestOrders_GetOrder_of_another_customer_is_not_found: the answer to
// another customer's order is the answer to an unknown id.
func TestOrders_GetOrder_of_another_customer_is_not_found(t *testing.T) {
	t.Parallel()
	app := &fakeApp{}
	theirs := app.seed(t, "c-2", 1)[0]
	h := newHandler(t, app)

	mine := do(t, h, http.MethodGet, "/orders/"+theirs.ID, "", "", as("c-2"))
	require.Equal(t, http.StatusOK, mine.Code, "body: %s", mine.Body.String())

	other := do(t, h, http.MethodGet, "/orders/"+theirs.ID, "", "", as("c-1"))
	unknownID := uuid.NewString()
	unknown := do(t, h, http.MethodGet, "/orders/"+unknownID, "", "", as("c-1"))
	pOther := problemOf(t, other, http.StatusNotFound, "order_not_found")
	pUnknown := problemOf(t, unknown, http.StatusNotFound, "order_not_found")
	pOther.Instance, pUnknown.Instance = "", ""
	assert.Equal(t, pUnknown, pOther, "the same answer")
	assert.Equal(t, unknown.Header().Get("Content-Type"), other.Header().Get("Content-Type"))
	assert.NotContains(t, other.Body.String(), "c-2")
	assert.Equal(t, []string{"c-2", "c-1", "c-1"}, app.gets, "the app is asked for the caller's order")
}

// TestOrders_ListOrders_is_the_callers: the list holds the caller's orders
// only, and customer_id may only name the caller.
func TestOrders_ListOrders_is_the_callers(t *testing.T) {
	t.Parallel()
	app := &fakeApp{}
	app.seed(t, "c-2", 2)
	mine := app.seed(t, "c-1", 3)[:3]
	h := newHandler(t, app)

	for _, target := range []string{"/orders", "/orders?customer_id=c-1"} {
		rec := do(t, h, http.MethodGet, target, "", "", as("c-1"))
		require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
		got := decodeJSON[listBody](t, rec)
		require.Len(t, got.Items, 3, target)
		for i, it := range got.Items {
			assert.Equal(t, "c-1", it.CustomerID)
			assert.Equal(t, mine[i].ID, it.ID)
		}
	}
	for _, target := range []string{"/orders?customer_id=c-2", "/orders?customer_id=c-2&limit=1"} {
		rec := do(t, h, http.MethodGet, target, "", "", as("c-1"))
		p := problemOf(t, rec, http.StatusForbidden, "customer_mismatch")
		assert.Equal(t, []string{"customer_id"}, fieldsOf(p))
		assert.NotContains(t, rec.Body.String(), `"items"`)
	}
	for _, q := range app.recordedQueries() {
		assert.Equal(t, "c-1", q.CustomerID, "the app lists the caller's orders only")
	}
	assert.Len(t, app.recordedQueries(), 2, "a refused list reaches no app")
}
