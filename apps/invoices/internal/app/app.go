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

// GetInvoice returns the customer's invoice with id. Another customer's
// invoice is domain.ErrInvoiceNotFound, as an unknown id is, so that the
// answer does not tell whether it exists.
func (a *App) GetInvoice(ctx context.Context, customerID, id string) (domain.Invoice, error) {
	inv, err := a.store.Get(ctx, id)
	if err != nil {
		return domain.Invoice{}, err
	}
	if customerID == "" || inv.CustomerID != customerID {
		return domain.Invoice{}, domain.ErrInvoiceNotFound
	}
	return inv, nil
}

// InvoicesOfOrder returns the customer's invoices of the order (one), or
// domain.ErrInvoiceNotFound when the customer has none for it: the order is
// not invoiced yet, is unknown, or is another customer's. The three answer
// alike, so that the answer does not tell another customer's order from an
// unknown one.
func (a *App) InvoicesOfOrder(ctx context.Context, customerID, orderID string) ([]domain.Invoice, error) {
	all, err := a.store.ByOrder(ctx, orderID)
	if err != nil {
		return nil, err
	}
	var own []domain.Invoice
	for _, inv := range all {
		if customerID != "" && inv.CustomerID == customerID {
			own = append(own, inv)
		}
	}
	if len(own) == 0 {
		return nil, domain.ErrInvoiceNotFound
	}
	return own, nil
}
