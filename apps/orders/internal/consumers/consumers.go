// Package consumers maps the events orders consumes to its use cases.
package consumers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// MarkInvoiced is the application side of the InvoiceIssued handler.
type MarkInvoiced interface {
	MarkInvoiced(ctx context.Context, orderID, invoiceID string) error
}

// Register adds orders' event handlers to p.
func Register(p *messaging.EventProcessor, a MarkInvoiced) error {
	return p.AddHandlers(
		cqrs.NewEventHandler(messaging.HandlerMarkInvoiced, func(ctx context.Context, e *events.InvoiceIssued) error {
			err := a.MarkInvoiced(ctx, e.OrderID, e.InvoiceID)
			if app.IsPermanent(err) {
				return messaging.Permanent(err)
			}
			return err
		}),
	)
}
