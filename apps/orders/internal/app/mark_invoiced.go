package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
)

// MarkInvoiced moves the order to invoiced. A redelivered InvoiceIssued
// changes nothing.
func (a *App) MarkInvoiced(ctx context.Context, orderID, invoiceID string) error {
	now := a.timestamp()
	var changed bool
	var placedAt time.Time
	err := a.store.Update(ctx, orderID, func(o *domain.Order) (bool, error) {
		var err error
		changed, err = o.MarkInvoiced(invoiceID, now)
		placedAt = o.CreatedAt
		return changed, err
	})
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
