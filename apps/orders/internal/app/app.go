// Package app holds the orders use cases. It declares what it needs of
// persistence and metrics, and knows nothing of HTTP, SQL or RabbitMQ.
package app

import (
	"context"
	"errors"
	"time"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
)

// Store is what the use cases need of persistence; store.Store is one.
type Store interface {
	// Create inserts the order and appends events to the outbox in one
	// transaction. With the key of an earlier request of the same customer
	// (o.CustomerID) it inserts nothing and returns that request's order
	// (created is false), or domain.ErrIdempotencyKeyReused when the bodies
	// differ. Keys are scoped per customer: another customer's request with
	// the same key is another order.
	Create(ctx context.Context, o domain.Order, idem *Idempotency, events ...any) (got domain.Order, created bool, err error)
	Get(ctx context.Context, id string) (domain.Order, error)
	List(ctx context.Context, q ListQuery) ([]domain.Order, error)
	// Update reads the order, lets change modify it, and writes it back
	// when change reports that it did, in one transaction.
	Update(ctx context.Context, id string, change func(*domain.Order) (bool, error)) error
	// MarkInvoiced moves the order to invoiced as domain.Order.MarkInvoiced
	// decides, and reports its creation time when it changed it.
	MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (placedAt time.Time, changed bool, err error)
}

// Idempotency identifies a request that may be retried: its Idempotency-Key
// and a hash of its body. A key belongs to the customer who sent it.
type Idempotency struct {
	Key  string
	Hash string
}

// ListQuery selects a page of one customer's orders, newest first.
type ListQuery struct {
	CustomerID string // required: ListOrders lists one customer's orders only
	After      string // the last id of the previous page (keyset cursor)
	Limit      int
}

// Metrics records the business figures.
type Metrics interface {
	OrderPlaced(ctx context.Context)
	OrderInvoiced(ctx context.Context, lag time.Duration)
}

// App runs the use cases.
type App struct {
	store   Store
	metrics Metrics
	now     func() time.Time
}

// New returns the use cases on s, recording figures in m.
func New(s Store, m Metrics) *App { return &App{store: s, metrics: m, now: time.Now} }

// GetOrder returns the customer's order with id. Another customer's order
// is domain.ErrOrderNotFound, as an unknown id is, so that the answer does
// not tell whether it exists.
func (a *App) GetOrder(ctx context.Context, customerID, id string) (domain.Order, error) {
	o, err := a.store.Get(ctx, id)
	if err != nil {
		return domain.Order{}, err
	}
	if customerID == "" || o.CustomerID != customerID {
		return domain.Order{}, domain.ErrOrderNotFound
	}
	return o, nil
}

// ErrNoCustomer is a list of orders asked for without a customer: the
// store would list everyone's.
var ErrNoCustomer = errors.New("list orders: no customer given")

// ListOrders returns a page of q.CustomerID's orders, newest first.
func (a *App) ListOrders(ctx context.Context, q ListQuery) ([]domain.Order, error) {
	if q.CustomerID == "" {
		return nil, ErrNoCustomer
	}
	return a.store.List(ctx, q)
}

// timestamp is now at PostgreSQL's precision.
func (a *App) timestamp() time.Time { return a.now().UTC().Truncate(time.Microsecond) }
