// Package metrics records orders' business figures with OpenTelemetry.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/observability"
)

// Metrics counts placed orders and times their invoicing.
type Metrics struct {
	placed metric.Int64Counter
	lag    metric.Float64Histogram
	shed   metric.Int64Counter
}

// New returns the metrics on mp's meter.
func New(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter("github.com/orderflow/orderflow/apps/orders")
	placed, err1 := meter.Int64Counter("orderflow.orders.placed",
		metric.WithUnit("{order}"), metric.WithDescription("Orders placed (idempotent replays excluded)."))
	lag, err2 := meter.Float64Histogram("orderflow.order.invoice_lag",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(observability.LagBuckets...),
		metric.WithDescription("Time from an order's creation to its InvoiceIssued event reaching orders."))
	shed, err3 := meter.Int64Counter("orderflow.orders.shed",
		metric.WithUnit("{request}"), metric.WithDescription("POST /orders requests refused with 503 while the outbox backlog was over OUTBOX_MAX_BACKLOG."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("create orders metrics: %w", err)
	}
	return &Metrics{placed: placed, lag: lag, shed: shed}, nil
}

// OrderPlaced counts a placed order; the app calls it once the order's
// transaction committed, and not for an idempotent replay.
func (m *Metrics) OrderPlaced(ctx context.Context) { m.placed.Add(ctx, 1) }

// OrderInvoiced records how long an order waited for its invoice; the app
// calls it when InvoiceIssued moved the order to invoiced, not on a
// redelivery.
func (m *Metrics) OrderInvoiced(ctx context.Context, lag time.Duration) {
	m.lag.Record(ctx, max(lag, 0).Seconds())
}

// OrderShed counts a POST /orders refused by load shedding.
func (m *Metrics) OrderShed(ctx context.Context) { m.shed.Add(ctx, 1) }
