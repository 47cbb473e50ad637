// Package metrics records invoices' business figures with OpenTelemetry.
package metrics

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/metric"
)

// Metrics counts issued invoices.
type Metrics struct {
	issued metric.Int64Counter
}

// New returns the metrics on mp's meter.
func New(mp metric.MeterProvider) (*Metrics, error) {
	issued, err := mp.Meter("github.com/orderflow/orderflow/apps/invoices").Int64Counter("orderflow.invoices.issued",
		metric.WithUnit("{invoice}"), metric.WithDescription("Invoices issued (duplicate deliveries excluded)."))
	if err != nil {
		return nil, fmt.Errorf("create invoices metrics: %w", err)
	}
	return &Metrics{issued: issued}, nil
}

// InvoiceIssued counts an issued invoice; the app calls it once the
// invoice's transaction committed, and not when a redelivery found it there.
func (m *Metrics) InvoiceIssued(ctx context.Context) { m.issued.Add(ctx, 1) }
