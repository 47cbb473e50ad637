// Package httpapi is the orders REST API: routes, request and response
// bodies, and the mapping of errors to problem documents.
package httpapi

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
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

// App is the use cases the API calls.
type App interface {
	PlaceOrder(ctx context.Context, n domain.NewOrder, idempotencyKey string) (domain.Order, bool, error)
	GetOrder(ctx context.Context, id string) (domain.Order, error)
	ListOrders(ctx context.Context, q app.ListQuery) ([]domain.Order, error)
}

type api struct {
	app App
	log *slog.Logger
}

// Routes returns the orders routes, for mounting on the service's router.
// shed guards POST /orders (load shedding: httpkit.Shed); nil guards nothing.
func Routes(a App, log *slog.Logger, shed func(http.Handler) http.Handler) func(chi.Router) {
	h := api{app: a, log: log}
	if shed == nil {
		shed = func(next http.Handler) http.Handler { return next }
	}
	return func(r chi.Router) {
		r.With(shed).Post("/orders", h.placeOrder)
		r.Get("/orders", h.listOrders)
		r.Get("/orders/{id}", h.getOrder)
		r.Get("/openapi.yaml", serveOpenAPI)
		r.Get("/asyncapi.yaml", serveAsyncAPI)
	}
}

type placeOrderRequest struct {
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
	o, created, err := h.app.PlaceOrder(r.Context(), domain.NewOrder{CustomerID: req.CustomerID, Amount: req.Amount, Currency: req.Currency}, key)
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
	o, err := h.app.GetOrder(r.Context(), id)
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
	q := app.ListQuery{CustomerID: params.Get("customer_id"), Limit: DefaultLimit}
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
