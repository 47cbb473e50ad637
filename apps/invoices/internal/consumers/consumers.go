// Package consumers maps the events invoices consumes to its use cases, and
// declares the RabbitMQ queues invoices needs.
package consumers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// Handler names are queue names: keep them stable.
const (
	// HandlerIssueInvoice is invoices' OrderPlaced handler.
	HandlerIssueInvoice = "invoices.IssueInvoiceOnOrderPlaced"
	// OrdersMarkInvoiced is the orders handler that consumes the
	// InvoiceIssued events invoices publishes.
	OrdersMarkInvoiced = "orders.MarkOrderInvoicedOnInvoiceIssued"
)

// Topology is what invoices declares on RabbitMQ: its handler's queue, and
// the queue of the subscriber of the events it publishes, so that an
// InvoiceIssued forwarded before orders first ran waits there.
var Topology = messaging.Topology{
	Subscriptions: []messaging.Subscription{
		{Service: "invoices", Handler: HandlerIssueInvoice, Topic: messaging.EventTopic("OrderPlaced")},
		{Service: "orders", Handler: OrdersMarkInvoiced, Topic: messaging.EventTopic("InvoiceIssued")},
	},
	DeliveryLimit: 20,
}

// IssueInvoice is the application side of the OrderPlaced handler.
type IssueInvoice interface {
	IssueInvoice(ctx context.Context, e *events.OrderPlaced) (bool, error)
}

// Register adds invoices' event handlers to p.
func Register(p *messaging.EventProcessor, a IssueInvoice) error {
	return p.AddHandlers(
		cqrs.NewEventHandler(HandlerIssueInvoice, func(ctx context.Context, e *events.OrderPlaced) error {
			_, err := a.IssueInvoice(ctx, e)
			return err
		}),
	)
}
