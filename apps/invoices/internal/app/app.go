// Package app holds the invoices use cases.
package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/events"
)

// Store is what the use cases need of persistence.
type Store interface {
	Issue(ctx context.Context, inv domain.Invoice, newEvents func(domain.Invoice) []any) (bool, error)
	Get(ctx context.Context, id string) (domain.Invoice, error)
	ByOrder(ctx context.Context, orderID string) ([]domain.Invoice, error)
}

// Metrics records the business figures; *observability.Telemetry is one.
type Metrics interface {
	RecordInvoiceIssued(ctx context.Context)
}

// App runs the use cases.
type App struct {
	store   Store
	metrics Metrics
	now     func() time.Time
}

// New returns the use cases on s, recording figures in m.
func New(s Store, m Metrics) *App { return &App{store: s, metrics: m, now: time.Now} }

// IssueInvoice issues the order's invoice and appends InvoiceIssued to the
// outbox, in one transaction. For an order that has its invoice already it
// does nothing and reports false.
func (a *App) IssueInvoice(ctx context.Context, e *events.OrderPlaced) (bool, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return false, fmt.Errorf("new invoice id: %w", err)
	}
	now := a.now().UTC().Truncate(time.Microsecond) // PostgreSQL's precision
	inv := domain.Invoice{ID: id.String(), OrderID: e.OrderID, CustomerID: e.CustomerID, Amount: e.Amount, Currency: e.Currency, IssuedAt: now}
	issued, err := a.store.Issue(ctx, inv, func(inv domain.Invoice) []any {
		return []any{&events.InvoiceIssued{
			Header:    events.Header{ID: uuid.NewString(), OccurredAt: now},
			InvoiceID: inv.ID, OrderID: inv.OrderID, CustomerID: inv.CustomerID,
			Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt,
		}}
	})
	if err != nil {
		return false, fmt.Errorf("issue invoice for order %s: %w", e.OrderID, err)
	}
	if issued {
		a.metrics.RecordInvoiceIssued(ctx)
	}
	return issued, nil
}

// GetInvoice returns one invoice.
func (a *App) GetInvoice(ctx context.Context, id string) (domain.Invoice, error) {
	return a.store.Get(ctx, id)
}

// InvoicesOfOrder returns the order's invoices (none or one).
func (a *App) InvoicesOfOrder(ctx context.Context, orderID string) ([]domain.Invoice, error) {
	return a.store.ByOrder(ctx, orderID)
}
