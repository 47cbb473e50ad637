// Package app holds the invoices use cases. It declares what it needs of
// persistence and metrics, and knows nothing of HTTP, SQL or RabbitMQ.
package app

import (
	"context"
	"time"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
)

// Store is what the use cases need of persistence; store.Store is one.
type Store interface {
	// Issue inserts the invoice and appends events to the outbox in one
	// transaction. For an order that has its invoice already it writes
	// nothing and reports false.
	Issue(ctx context.Context, inv domain.Invoice, events ...any) (bool, error)
	Get(ctx context.Context, id string) (domain.Invoice, error)
	ByOrder(ctx context.Context, orderID string) ([]domain.Invoice, error)
}

// Metrics records the business figures.
type Metrics interface {
	InvoiceIssued(ctx context.Context)
}

// App runs the use cases.
type App struct {
	store   Store
	metrics Metrics
	now     func() time.Time
}

// New returns the use cases on s, recording figures in m.
func New(s Store, m Metrics) *App { return &App{store: s, metrics: m, now: time.Now} }

// GetInvoice returns one invoice.
func (a *App) GetInvoice(ctx context.Context, id string) (domain.Invoice, error) {
	return a.store.Get(ctx, id)
}

// InvoicesOfOrder returns the order's invoices (none or one).
func (a *App) InvoicesOfOrder(ctx context.Context, orderID string) ([]domain.Invoice, error) {
	return a.store.ByOrder(ctx, orderID)
}
