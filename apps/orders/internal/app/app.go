// Package app holds the orders use cases. It declares the store it needs and
// knows nothing of HTTP or RabbitMQ.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/store"
	"github.com/orderflow/orderflow/pkg/events"
)

// Store is what the use cases need of persistence.
type Store interface {
	Create(ctx context.Context, o domain.Order, idem *store.Idempotency, events ...any) (domain.Order, bool, error)
	Get(ctx context.Context, id string) (domain.Order, error)
	List(ctx context.Context, q store.ListQuery) ([]domain.Order, error)
	Update(ctx context.Context, id string, fn func(*domain.Order) (bool, error)) error
	MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (createdAt time.Time, changed bool, err error)
}

// Metrics records the business figures; *observability.Telemetry is one.
type Metrics interface {
	RecordOrderPlaced(ctx context.Context)
	RecordOrderInvoiceLag(ctx context.Context, lag time.Duration)
}

// App runs the use cases.
type App struct {
	store   Store
	metrics Metrics
	now     func() time.Time
}

// New returns the use cases on s, recording figures in m.
func New(s Store, m Metrics) *App { return &App{store: s, metrics: m, now: time.Now} }

// PlaceOrder validates the order, stores it and appends OrderPlaced to the
// outbox in one transaction. With an idempotency key it returns the order of
// the key's first request instead (created is false).
func (a *App) PlaceOrder(ctx context.Context, n domain.NewOrder, idempotencyKey string) (domain.Order, bool, error) {
	if err := n.Validate(); err != nil {
		return domain.Order{}, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return domain.Order{}, false, fmt.Errorf("new order id: %w", err)
	}
	now := a.now().UTC().Truncate(time.Microsecond) // PostgreSQL's precision
	o := domain.Order{
		ID: id.String(), CustomerID: *n.CustomerID, Amount: *n.Amount, Currency: *n.Currency,
		Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
	}
	var idem *store.Idempotency
	if idempotencyKey != "" {
		idem = &store.Idempotency{Key: idempotencyKey, Hash: requestHash(n)}
	}
	got, created, err := a.store.Create(ctx, o, idem, &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
		OrderID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency, PlacedAt: now,
	})
	if err == nil && created {
		a.metrics.RecordOrderPlaced(ctx)
	}
	return got, created, err
}

// requestHash identifies a request body by its meaning, so the same order
// sent again with other whitespace or key order still matches.
func requestHash(n domain.NewOrder) string {
	sum := sha256.Sum256([]byte(strconv.Quote(*n.CustomerID) + "|" + strconv.FormatInt(*n.Amount, 10) + "|" + *n.Currency))
	return hex.EncodeToString(sum[:])
}

// GetOrder returns one order.
func (a *App) GetOrder(ctx context.Context, id string) (domain.Order, error) {
	return a.store.Get(ctx, id)
}

// ListOrders returns a page of orders, newest first.
func (a *App) ListOrders(ctx context.Context, q store.ListQuery) ([]domain.Order, error) {
	return a.store.List(ctx, q)
}

// MarkInvoiced moves the order to invoiced. A redelivered InvoiceIssued
// changes nothing.
func (a *App) MarkInvoiced(ctx context.Context, orderID, invoiceID string) error {
	now := a.now().UTC().Truncate(time.Microsecond)
	createdAt, changed, err := a.store.MarkInvoiced(ctx, orderID, invoiceID, now)
	if err != nil {
		return fmt.Errorf("mark order %s invoiced: %w", orderID, err)
	}
	if changed {
		a.metrics.RecordOrderInvoiceLag(ctx, now.Sub(createdAt))
	}
	return nil
}

// IsPermanent reports errors no retry can fix.
func IsPermanent(err error) bool {
	return errors.Is(err, domain.ErrOrderNotFound) || errors.Is(err, domain.ErrAlreadyInvoiced)
}
