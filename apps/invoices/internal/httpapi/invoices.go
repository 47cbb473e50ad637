// Package httpapi is the invoices REST API.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// App is the use cases the API calls. Each one is given the caller: the
// customer Kong authenticated (httpkit.RequireConsumer).
type App interface {
	// GetInvoice returns customerID's invoice, or domain.ErrInvoiceNotFound
	// for an unknown id and for another customer's invoice alike.
	GetInvoice(ctx context.Context, customerID, id string) (domain.Invoice, error)
	// InvoicesOfOrder returns customerID's invoices of the order, or
	// domain.ErrInvoiceNotFound when there is none.
	InvoicesOfOrder(ctx context.Context, customerID, orderID string) ([]domain.Invoice, error)
}

type api struct {
	app App
	log *slog.Logger
}

// Routes returns the invoices routes, for mounting on the service's router.
func Routes(a App, log *slog.Logger) func(chi.Router) {
	h := api{app: a, log: log}
	return func(r chi.Router) {
		// Only a request that names its caller (Kong's X-Consumer-Custom-ID);
		// the documents are open, as /healthz, /readyz and /metrics are.
		r.Group(func(r chi.Router) {
			r.Use(httpkit.RequireConsumer)
			r.Get("/invoices", h.listInvoices)
			r.Get("/invoices/{id}", h.getInvoice)
		})
		r.Get("/openapi.yaml", serveOpenAPI)
		r.Get("/asyncapi.yaml", serveAsyncAPI)
	}
}

type invoiceResponse struct {
	ID         string    `json:"id"`
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	IssuedAt   time.Time `json:"issued_at"`
}

type invoiceListResponse struct {
	Items []invoiceResponse `json:"items"`
}

func toResponse(i domain.Invoice) invoiceResponse {
	return invoiceResponse{ID: i.ID, OrderID: i.OrderID, CustomerID: i.CustomerID, Amount: i.Amount, Currency: i.Currency, IssuedAt: i.IssuedAt}
}

func (h api) getInvoice(w http.ResponseWriter, r *http.Request) {
	if _, ok := httpkit.Query(w, r); !ok {
		return
	}
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		httpkit.Error(w, r, http.StatusBadRequest, "invalid_id", "the invoice id must be a UUID")
		return
	}
	inv, err := h.app.GetInvoice(r.Context(), caller(r), id.String())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpkit.JSON(w, http.StatusOK, toResponse(inv))
}

func (h api) listInvoices(w http.ResponseWriter, r *http.Request) {
	params, ok := httpkit.Query(w, r, "order_id")
	if !ok {
		return
	}
	raw := params.Get("order_id")
	orderID, err := uuid.Parse(raw)
	if err != nil {
		detail := "order_id must be a UUID"
		if raw == "" {
			detail = "order_id is required"
		}
		httpkit.WriteProblem(w, r, httpkit.Problem{
			Status: http.StatusBadRequest, Code: "invalid_query", Detail: detail,
			Errors: []httpkit.FieldError{{Field: "order_id", Message: detail}},
		})
		return
	}
	invs, err := h.app.InvoicesOfOrder(r.Context(), caller(r), orderID.String())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	resp := invoiceListResponse{Items: make([]invoiceResponse, len(invs))}
	for i, inv := range invs {
		resp.Items[i] = toResponse(inv)
	}
	httpkit.JSON(w, http.StatusOK, resp)
}

// caller is the authenticated customer RequireConsumer put in the context.
func caller(r *http.Request) string {
	id, _ := httpkit.Consumer(r.Context())
	return id
}
