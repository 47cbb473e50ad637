package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
)

// MarkInvoiced moves the order to invoiced. A redelivered InvoiceIssued
// changes nothing.
func (a *App) MarkInvoiced(ctx context.Context, orderID, invoiceID string) error {
	now := a.timestamp()
	placedAt, changed, err := a.store.MarkInvoiced(ctx, orderID, invoiceID, now)
	if err != nil {
		return fmt.Errorf("mark order %s invoiced: %w", orderID, err)
	}
	if changed {
		a.metrics.OrderInvoiced(ctx, now.Sub(placedAt))
	}
	return nil
}

// IsPermanent reports errors no retry can fix.
func IsPermanent(err error) bool {
	return errors.Is(err, domain.ErrOrderNotFound) || errors.Is(err, domain.ErrAlreadyInvoiced)
}
