// Package consumers maps the events orders consumes to its use cases, and
// declares the RabbitMQ queues orders needs.
package consumers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// Handler names are queue names: keep them stable.
const (
	// HandlerMarkInvoiced is orders' InvoiceIssued handler.
	HandlerMarkInvoiced = "orders.MarkOrderInvoicedOnInvoiceIssued"
	// InvoicesIssueInvoice is the invoices handler that consumes the
	// OrderPlaced events orders publishes.
	InvoicesIssueInvoice = "invoices.IssueInvoiceOnOrderPlaced"
)

// Topology is what orders declares on RabbitMQ: its handler's queue, and the
// queue of the subscriber of the events it publishes, so that an OrderPlaced
// forwarded before invoices first ran waits there.
var Topology = messaging.Topology{
	Subscriptions: []messaging.Subscription{
		{Service: "orders", Handler: HandlerMarkInvoiced, Topic: messaging.EventTopic("InvoiceIssued")},
		{Service: "invoices", Handler: InvoicesIssueInvoice, Topic: messaging.EventTopic("OrderPlaced")},
	},
	DeliveryLimit: 20,
}

// MarkInvoiced is the application side of the InvoiceIssued handler.
type MarkInvoiced interface {
	MarkInvoiced(ctx context.Context, orderID, invoiceID string) error
}

// Register adds orders' event handlers to p.
func Register(p *messaging.EventProcessor, a MarkInvoiced) error {
	return p.AddHandlers(
		cqrs.NewEventHandler(HandlerMarkInvoiced, func(ctx context.Context, e *events.InvoiceIssued) error {
			err := a.MarkInvoiced(ctx, e.OrderID, e.InvoiceID)
			if app.IsPermanent(err) {
				return messaging.Permanent(err)
			}
			return err
		}),
	)
}
