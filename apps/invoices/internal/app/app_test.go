package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/invoices/internal/app"
	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/events"
)

// memStore is an in-memory app.Store: one invoice per order.
type memStore struct {
	byOrder map[string]domain.Invoice
	events  []any
}

func (s *memStore) Issue(_ context.Context, inv domain.Invoice, evs ...any) (bool, error) {
	if _, ok := s.byOrder[inv.OrderID]; ok {
		return false, nil
	}
	s.byOrder[inv.OrderID] = inv
	s.events = append(s.events, evs...)
	return true, nil
}

func (s *memStore) Get(_ context.Context, id string) (domain.Invoice, error) {
	for _, inv := range s.byOrder {
		if inv.ID == id {
			return inv, nil
		}
	}
	return domain.Invoice{}, domain.ErrInvoiceNotFound
}

func (s *memStore) ByOrder(_ context.Context, orderID string) ([]domain.Invoice, error) {
	if inv, ok := s.byOrder[orderID]; ok {
		return []domain.Invoice{inv}, nil
	}
	return []domain.Invoice{}, nil
}

type counted struct{ issued int }

func (c *counted) InvoiceIssued(context.Context) { c.issued++ }

func TestApp_IssueInvoice(t *testing.T) {
	t.Parallel()
	s, m := &memStore{byOrder: map[string]domain.Invoice{}}, &counted{}
	a := app.New(s, m)
	placed := &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: time.Now()},
		OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: time.Now(),
	}

	issued, err := a.IssueInvoice(t.Context(), placed)
	require.NoError(t, err)
	assert.True(t, issued)
	invs, err := a.InvoicesOfOrder(t.Context(), "c-1", placed.OrderID)
	require.NoError(t, err)
	require.Len(t, invs, 1)
	inv := invs[0]
	assert.Equal(t, domain.Invoice{
		ID: inv.ID, OrderID: placed.OrderID, CustomerID: "c-1", Amount: 1999, Currency: "EUR", IssuedAt: inv.IssuedAt,
	}, inv)
	require.Len(t, s.events, 1)
	assert.Equal(t, &events.InvoiceIssued{
		Header:    events.Header{ID: s.events[0].(*events.InvoiceIssued).ID, OccurredAt: inv.IssuedAt},
		InvoiceID: inv.ID, OrderID: inv.OrderID, CustomerID: "c-1", Amount: 1999, Currency: "EUR", IssuedAt: inv.IssuedAt,
	}, s.events[0], "the event carries the invoice as stored")
	assert.Equal(t, 1, m.issued)

	issued, err = a.IssueInvoice(t.Context(), placed)
	require.NoError(t, err)
	assert.False(t, issued, "a redelivered OrderPlaced issues nothing")
	assert.Len(t, s.events, 1)
	assert.Equal(t, 1, m.issued, "and counts nothing")
}

func TestApp_invoices_are_the_customers_own(t *testing.T) {
	t.Parallel()
	s, m := &memStore{byOrder: map[string]domain.Invoice{}}, &counted{}
	a := app.New(s, m)
	placed := &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: time.Now()},
		OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: time.Now(),
	}
	_, err := a.IssueInvoice(t.Context(), placed)
	require.NoError(t, err)
	inv := s.byOrder[placed.OrderID]

	got, err := a.GetInvoice(t.Context(), "c-1", inv.ID)
	require.NoError(t, err)
	assert.Equal(t, inv, got)
	invs, err := a.InvoicesOfOrder(t.Context(), "c-1", placed.OrderID)
	require.NoError(t, err)
	assert.Equal(t, []domain.Invoice{inv}, invs)

	for _, customer := range []string{"c-2", ""} {
		_, err = a.GetInvoice(t.Context(), customer, inv.ID)
		require.ErrorIs(t, err, domain.ErrInvoiceNotFound, "%q: another customer's invoice", customer)
		_, err = a.InvoicesOfOrder(t.Context(), customer, placed.OrderID)
		require.ErrorIs(t, err, domain.ErrInvoiceNotFound, "%q: another customer's order", customer)
	}
	_, err = a.GetInvoice(t.Context(), "c-1", uuid.NewString())
	require.ErrorIs(t, err, domain.ErrInvoiceNotFound, "an unknown id is answered alike")
	_, err = a.InvoicesOfOrder(t.Context(), "c-1", uuid.NewString())
	require.ErrorIs(t, err, domain.ErrInvoiceNotFound, "an order without an invoice is answered alike")
}
