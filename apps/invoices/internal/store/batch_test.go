package store_test

import (
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// TestStore_IssueBatch gives one transaction new orders, an order twice and
// an order invoiced before, and checks that each call gets the answer it
// would get alone.
func TestStore_IssueBatch(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	var evts issued
	orderX, orderY, orderZ := uuid.NewString(), uuid.NewString(), uuid.NewString()
	z := newInvoice(t, orderZ)
	ok, err := s.Issue(t.Context(), z, evts.events)
	require.NoError(t, err)
	require.True(t, ok)

	x, y := newInvoice(t, orderX), newInvoice(t, orderY)
	got, err := s.IssueBatch(t.Context(), []domain.Invoice{
		x, y,
		newInvoice(t, orderX), // a redelivered OrderPlaced in the same batch
		newInvoice(t, orderZ), // a redelivery of an order invoiced before
	}, evts.events)
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, false, false}, got)
	assert.Equal(t, 3, testkit.CountRows(t, db, "invoices"))
	assert.Equal(t, evts.written(z, x, y), testkit.OutboxRows(t, db), "events of the inserted invoices only")
	for _, inv := range []domain.Invoice{x, y} {
		stored, err := s.Get(t.Context(), inv.ID)
		require.NoError(t, err)
		assert.Equal(t, inv, stored)
	}
}

// TestStore_group_commit_under_concurrency delivers every OrderPlaced twice,
// all at once, so that calls share transactions: one invoice and one event
// per order.
func TestStore_group_commit_under_concurrency(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	var evts issued
	const orders = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	var inserted []domain.Invoice
	for range orders {
		orderID := uuid.NewString()
		for range 2 {
			wg.Go(func() {
				inv := newInvoice(t, orderID)
				ok, err := s.Issue(t.Context(), inv, evts.events)
				assert.NoError(t, err)
				if ok {
					mu.Lock()
					inserted = append(inserted, inv)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	assert.Len(t, inserted, orders)
	assert.Equal(t, orders, testkit.CountRows(t, db, "invoices"))
	assert.ElementsMatch(t, evts.written(inserted...), testkit.OutboxRows(t, db), "one event per inserted invoice")
}
