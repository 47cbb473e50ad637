// Package consumers maps the events invoices consumes to its use cases.
package consumers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// IssueInvoice is the application side of the OrderPlaced handler.
type IssueInvoice interface {
	IssueInvoice(ctx context.Context, e *events.OrderPlaced) (bool, error)
}

// Register adds invoices' event handlers to p.
func Register(p *messaging.EventProcessor, a IssueInvoice) error {
	return p.AddHandlers(
		cqrs.NewEventHandler(messaging.HandlerIssueInvoice, func(ctx context.Context, e *events.OrderPlaced) error {
			_, err := a.IssueInvoice(ctx, e)
			return err
		}),
	)
}
