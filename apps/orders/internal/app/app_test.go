package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/events"
)

// memStore is an in-memory app.Store with the real store's idempotency rule:
// keys are scoped per customer.
type memStore struct {
	orders map[string]domain.Order
	keys   map[string]app.Idempotency // customer|key → first request
	byKey  map[string]string          // customer|key → order id
	events []any
	lists  []app.ListQuery
}

func newMemStore() *memStore {
	return &memStore{orders: map[string]domain.Order{}, keys: map[string]app.Idempotency{}, byKey: map[string]string{}}
}

func (s *memStore) Create(_ context.Context, o domain.Order, idem *app.Idempotency, evs ...any) (domain.Order, bool, error) {
	if idem != nil {
		k := o.CustomerID + "|" + idem.Key
		if first, ok := s.keys[k]; ok {
			if first.Hash != idem.Hash {
				return domain.Order{}, false, domain.ErrIdempotencyKeyReused
			}
			return s.orders[s.byKey[k]], false, nil
		}
		s.keys[k], s.byKey[k] = *idem, o.ID
	}
	s.orders[o.ID] = o
	s.events = append(s.events, evs...)
	return o, true, nil
}

func (s *memStore) Get(_ context.Context, id string) (domain.Order, error) {
	o, ok := s.orders[id]
	if !ok {
		return domain.Order{}, domain.ErrOrderNotFound
	}
	return o, nil
}

func (s *memStore) List(_ context.Context, q app.ListQuery) ([]domain.Order, error) {
	s.lists = append(s.lists, q)
	return nil, nil
}

func (s *memStore) Update(_ context.Context, id string, change func(*domain.Order) (bool, error)) error {
	o, ok := s.orders[id]
	if !ok {
		return domain.ErrOrderNotFound
	}
	changed, err := change(&o)
	if err == nil && changed {
		s.orders[id] = o
	}
	return err
}

func (s *memStore) MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (time.Time, bool, error) {
	var placedAt time.Time
	var changed bool
	err := s.Update(ctx, id, func(o *domain.Order) (bool, error) {
		placedAt = o.CreatedAt
		var err error
		changed, err = o.MarkInvoiced(invoiceID, at)
		return changed, err
	})
	return placedAt, changed, err
}

type recorded struct {
	placed int
	lags   []time.Duration
}

func (r *recorded) OrderPlaced(context.Context)                        { r.placed++ }
func (r *recorded) OrderInvoiced(_ context.Context, lag time.Duration) { r.lags = append(r.lags, lag) }

func ptr[T any](v T) *T { return &v }

func newOrder() domain.NewOrder {
	return domain.NewOrder{CustomerID: ptr("c-1"), Amount: ptr(int64(1999)), Currency: ptr("EUR")}
}

func TestApp_PlaceOrder(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)

	o, created, err := a.PlaceOrder(t.Context(), newOrder(), "")
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, domain.StatusPending, o.Status)
	_, err = uuid.Parse(o.ID)
	require.NoError(t, err)
	require.Len(t, s.events, 1)
	placed, ok := s.events[0].(*events.OrderPlaced)
	require.True(t, ok, "%T", s.events[0])
	assert.Equal(t, events.OrderPlaced{
		Header:  events.Header{ID: placed.ID, OccurredAt: o.CreatedAt},
		OrderID: o.ID, CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: o.CreatedAt,
	}, *placed, "the event carries the order as stored")
	assert.Equal(t, 1, m.placed)
}

func TestApp_PlaceOrder_idempotency(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)
	first, _, err := a.PlaceOrder(t.Context(), newOrder(), "key-1")
	require.NoError(t, err)

	again, created, err := a.PlaceOrder(t.Context(), newOrder(), "key-1")
	require.NoError(t, err)
	assert.False(t, created, "the same body replays")
	assert.Equal(t, first.ID, again.ID)

	other := newOrder()
	other.Amount = ptr(int64(1))
	_, _, err = a.PlaceOrder(t.Context(), other, "key-1")
	require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused, "another body is refused")
	assert.Equal(t, 1, m.placed, "a replay is not a placed order")
	assert.Len(t, s.events, 1)
}

func TestApp_PlaceOrder_invalid_order_reaches_no_store(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	n := newOrder()
	n.Currency = ptr("euro")
	_, _, err := app.New(s, m).PlaceOrder(t.Context(), n, "")
	var invalid *domain.ValidationError
	require.ErrorAs(t, err, &invalid)
	assert.Empty(t, s.orders)
	assert.Zero(t, m.placed)
}

func TestApp_MarkInvoiced(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)
	o, _, err := a.PlaceOrder(t.Context(), newOrder(), "")
	require.NoError(t, err)
	invoiceID := uuid.NewString()

	require.NoError(t, a.MarkInvoiced(t.Context(), o.ID, invoiceID))
	got, err := a.GetOrder(t.Context(), "c-1", o.ID)
	require.NoError(t, err)
	assert.Equal(t, domain.StatusInvoiced, got.Status)
	assert.Equal(t, invoiceID, got.InvoiceID)
	require.Len(t, m.lags, 1)
	assert.GreaterOrEqual(t, m.lags[0], time.Duration(0))

	require.NoError(t, a.MarkInvoiced(t.Context(), o.ID, invoiceID), "a redelivery changes nothing")
	assert.Len(t, m.lags, 1, "and records no second lag")

	err = a.MarkInvoiced(t.Context(), o.ID, uuid.NewString())
	require.ErrorIs(t, err, domain.ErrAlreadyInvoiced)
	assert.True(t, app.IsPermanent(err), "another invoice for the order: no retry can fix it")
	err = a.MarkInvoiced(t.Context(), uuid.NewString(), invoiceID)
	require.ErrorIs(t, err, domain.ErrOrderNotFound)
	assert.True(t, app.IsPermanent(err))
	assert.False(t, app.IsPermanent(errors.New("connection reset")))
}

func TestApp_PlaceOrder_idempotency_keys_are_scoped_per_customer(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)
	mine, _, err := a.PlaceOrder(t.Context(), newOrder(), "key-1")
	require.NoError(t, err)

	other := newOrder()
	other.CustomerID = ptr("c-2")
	theirs, created, err := a.PlaceOrder(t.Context(), other, "key-1")
	require.NoError(t, err)
	assert.True(t, created, "the same key from another customer is another order")
	assert.NotEqual(t, mine.ID, theirs.ID)
	assert.Equal(t, "c-2", theirs.CustomerID)
	assert.Equal(t, 2, m.placed)
	require.Len(t, s.events, 2, "each order has its event")
	assert.Equal(t, "c-2", s.events[1].(*events.OrderPlaced).CustomerID, "the event carries the customer")
}

func TestApp_GetOrder_is_the_customers_own(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)
	o, _, err := a.PlaceOrder(t.Context(), newOrder(), "")
	require.NoError(t, err)

	got, err := a.GetOrder(t.Context(), "c-1", o.ID)
	require.NoError(t, err)
	assert.Equal(t, o, got)
	for _, customer := range []string{"c-2", ""} {
		_, err = a.GetOrder(t.Context(), customer, o.ID)
		require.ErrorIs(t, err, domain.ErrOrderNotFound, "%q is told what an unknown id is told", customer)
	}
	_, err = a.GetOrder(t.Context(), "c-1", uuid.NewString())
	require.ErrorIs(t, err, domain.ErrOrderNotFound)
}

func TestApp_ListOrders_needs_a_customer(t *testing.T) {
	t.Parallel()
	s, m := newMemStore(), &recorded{}
	a := app.New(s, m)
	_, err := a.ListOrders(t.Context(), app.ListQuery{Limit: 10})
	require.ErrorIs(t, err, app.ErrNoCustomer, "never everyone's orders")
	assert.Empty(t, s.lists, "the store is not asked")
	_, err = a.ListOrders(t.Context(), app.ListQuery{CustomerID: "c-1", Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []app.ListQuery{{CustomerID: "c-1", Limit: 10}}, s.lists)
}
