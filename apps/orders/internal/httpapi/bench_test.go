package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// constApp answers every use case at once, so the benchmark measures the
// HTTP path alone: routing, correlation id, decoding, validation, encoding.
type constApp struct{ o domain.Order }

func (a constApp) PlaceOrder(_ context.Context, n domain.NewOrder, _ string) (domain.Order, bool, error) {
	if err := n.Validate(); err != nil {
		return domain.Order{}, false, err
	}
	return a.o, true, nil
}

func (a constApp) GetOrder(context.Context, string, string) (domain.Order, error) { return a.o, nil }

func (a constApp) ListOrders(context.Context, app.ListQuery) ([]domain.Order, error) {
	return []domain.Order{a.o}, nil
}

func BenchmarkPOSTOrders(b *testing.B) {
	now := time.Now().UTC()
	h := newHandler(b, constApp{o: domain.Order{
		ID: "01a21582-c08e-72c6-9a41-487ed5c67121", CustomerID: "c-1", Amount: 1999, Currency: "EUR",
		Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
	}})
	const body = `{"customer_id":"c-12345","amount":1999,"currency":"EUR"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(httpkit.ConsumerHeader, "c-12345")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
