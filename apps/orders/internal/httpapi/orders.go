// Package httpapi is the orders REST API: routes, request and response
// bodies, and the mapping of errors to problem documents.
package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// IdempotencyKeyHeader makes POST /orders safe to retry.
const IdempotencyKeyHeader = "Idempotency-Key"

// Page sizes of GET /orders.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// App is the use cases the API calls. Each one is given the caller: the
// customer Kong authenticated (httpkit.RequireConsumer).
type App interface {
	PlaceOrder(ctx context.Context, n domain.NewOrder, idempotencyKey string) (domain.Order, bool, error)
	// GetOrder returns customerID's order, or domain.ErrOrderNotFound for
	// an unknown id and for another customer's order alike.
	GetOrder(ctx context.Context, customerID, id string) (domain.Order, error)
	// ListOrders lists q.CustomerID's orders only.
	ListOrders(ctx context.Context, q app.ListQuery) ([]domain.Order, error)
}

type api struct {
	app App
	log *slog.Logger
}

// Routes returns the orders routes, for mounting on the service's router.
// shed guards POST /orders (back-pressure and load shedding:
// httpkit.Shed); nil guards nothing. The API routes serve only a request
// that names its caller (httpkit.RequireConsumer: Kong's
// X-Consumer-Custom-ID); the documents are open, as /healthz, /readyz and
// /metrics are.
func Routes(a App, log *slog.Logger, shed func(http.Handler) http.Handler) func(chi.Router) {
	h := api{app: a, log: log}
	if shed == nil {
		shed = func(next http.Handler) http.Handler { return next }
	}
	return func(r chi.Router) {
		r.Group(func(r chi.Router) {
			r.Use(httpkit.RequireConsumer)
			r.With(shed).Post("/orders", h.placeOrder)
			r.Get("/orders", h.listOrders)
			r.Get("/orders/{id}", h.getOrder)
		})
		r.Get("/openapi.yaml", serveOpenAPI)
		r.Get("/asyncapi.yaml", serveAsyncAPI)
	}
}

// caller is the authenticated customer RequireConsumer put in the context.
func caller(r *http.Request) string {
	id, _ := httpkit.Consumer(r.Context())
	return id
}

// writeCustomerMismatch answers a request that names another customer than
// its caller. It is a 403, not a 404: what the request names is the
// client's own input, so the answer reveals nothing it did not send.
func writeCustomerMismatch(w http.ResponseWriter, r *http.Request, field string) {
	detail := field + " must be the authenticated customer's id (or be left out)"
	httpkit.WriteProblem(w, r, httpkit.Problem{
		Status: http.StatusForbidden, Code: "customer_mismatch", Detail: detail,
		Errors: []httpkit.FieldError{{Field: field, Message: detail}},
	})
}

type placeOrderRequest struct {
	// CustomerID is optional: the order is the caller's. When given it must
	// be the caller's id.
	CustomerID *string `json:"customer_id"`
	Amount     *int64  `json:"amount"`
	Currency   *string `json:"currency"`
}

type orderResponse struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	InvoiceID  string    `json:"invoice_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

type orderListResponse struct {
	Items      []orderResponse `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

func toResponse(o domain.Order) orderResponse {
	return orderResponse{
		ID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency,
		Status: string(o.Status), InvoiceID: o.InvoiceID, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
}

func (h api) placeOrder(w http.ResponseWriter, r *http.Request) {
	if _, ok := httpkit.Query(w, r); !ok {
		return
	}
	key := r.Header.Get(IdempotencyKeyHeader)
	if len(r.Header.Values(IdempotencyKeyHeader)) > 0 && !validIdempotencyKey(key) {
		httpkit.Error(w, r, http.StatusBadRequest, "invalid_idempotency_key",
			"Idempotency-Key must be 1-255 printable ASCII characters")
		return
	}
	var req placeOrderRequest
	if err := httpkit.DecodeJSON(w, r, &req); err != nil {
		httpkit.WriteDecodeError(w, r, err)
		return
	}
	customer := caller(r)
	n := domain.NewOrder{CustomerID: &customer, Amount: req.Amount, Currency: req.Currency}
	if req.CustomerID != nil && *req.CustomerID != customer {
		h.refuseOtherCustomer(w, r, n, *req.CustomerID)
		return
	}
	o, created, err := h.app.PlaceOrder(r.Context(), n, key)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/orders/"+o.ID)
	status := http.StatusCreated
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	httpkit.JSON(w, status, toResponse(o))
}

// refuseOtherCustomer answers an order whose body names sent, not the
// caller, as its customer: a 422 when sent is no customer id at all (with
// the other fields' problems, as any invalid order), else a 403.
func (h api) refuseOtherCustomer(w http.ResponseWriter, r *http.Request, n domain.NewOrder, sent string) {
	n.CustomerID = &sent
	var invalid *domain.ValidationError
	if err := n.Validate(); errors.As(err, &invalid) && slices.ContainsFunc(invalid.Fields, func(f domain.FieldError) bool {
		return f.Field == "customer_id"
	}) {
		h.writeError(w, r, err)
		return
	}
	writeCustomerMismatch(w, r, "customer_id")
}

func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func (h api) getOrder(w http.ResponseWriter, r *http.Request) {
	if _, ok := httpkit.Query(w, r); !ok {
		return
	}
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	o, err := h.app.GetOrder(r.Context(), caller(r), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpkit.JSON(w, http.StatusOK, toResponse(o))
}

func (h api) listOrders(w http.ResponseWriter, r *http.Request) {
	params, ok := httpkit.Query(w, r, "customer_id", "limit", "cursor")
	if !ok {
		return
	}
	// The list is the caller's: customer_id may only repeat it.
	customer := caller(r)
	if v := params.Get("customer_id"); v != "" && v != customer {
		writeCustomerMismatch(w, r, "customer_id")
		return
	}
	q := app.ListQuery{CustomerID: customer, Limit: DefaultLimit}
	if v := params.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			httpkit.WriteProblem(w, r, httpkit.Problem{
				Status: http.StatusBadRequest, Code: "invalid_query",
				Detail: "limit must be an integer from 1 to " + strconv.Itoa(MaxLimit),
				Errors: []httpkit.FieldError{{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(MaxLimit)}},
			})
			return
		}
		q.Limit = n
	}
	if v := params.Get("cursor"); v != "" {
		after, ok := decodeCursor(v)
		if !ok {
			httpkit.WriteProblem(w, r, httpkit.Problem{
				Status: http.StatusBadRequest, Code: "invalid_query",
				Detail: "cursor is not one this API returned",
				Errors: []httpkit.FieldError{{Field: "cursor", Message: "is not one this API returned"}},
			})
			return
		}
		q.After = after
	}
	orders, err := h.app.ListOrders(r.Context(), q)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	resp := orderListResponse{Items: make([]orderResponse, len(orders))}
	for i, o := range orders {
		resp.Items[i] = toResponse(o)
	}
	if len(orders) == q.Limit {
		resp.NextCursor = encodeCursor(orders[len(orders)-1].ID)
	}
	httpkit.JSON(w, http.StatusOK, resp)
}

// Cursors are opaque to clients: the last id of a page, base64url-encoded.
func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", false
	}
	id, err := uuid.Parse(string(b))
	if err != nil {
		return "", false
	}
	return id.String(), true
}

func parseID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		httpkit.Error(w, r, http.StatusBadRequest, "invalid_id", "the order id must be a UUID")
		return "", false
	}
	return id.String(), true
}
