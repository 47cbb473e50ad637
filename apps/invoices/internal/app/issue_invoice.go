package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/events"
)

// IssueInvoice issues the order's invoice and appends InvoiceIssued to the
// outbox, in one transaction. For an order that has its invoice already (a
// redelivered OrderPlaced) it does nothing and reports false.
func (a *App) IssueInvoice(ctx context.Context, e *events.OrderPlaced) (bool, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return false, fmt.Errorf("new invoice id: %w", err)
	}
	now := a.now().UTC().Truncate(time.Microsecond) // PostgreSQL's precision
	inv := domain.Invoice{ID: id.String(), OrderID: e.OrderID, CustomerID: e.CustomerID, Amount: e.Amount, Currency: e.Currency, IssuedAt: now}
	issued, err := a.store.Issue(ctx, inv, &events.InvoiceIssued{
		Header:    events.Header{ID: uuid.NewString(), OccurredAt: now},
		InvoiceID: inv.ID, OrderID: inv.OrderID, CustomerID: inv.CustomerID,
		Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt,
	})
	if err != nil {
		return false, fmt.Errorf("issue invoice for order %s: %w", e.OrderID, err)
	}
	if issued {
		a.metrics.InvoiceIssued(ctx)
	}
	return issued, nil
}
