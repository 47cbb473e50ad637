package store_test

import (
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/apps/invoices/internal/store"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// With group commit (batch.go), redeliveries mixed with new
// orders still issue one invoice and one event per order.
func TestStore_Issue_in_shared_transactions(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	_, db := newStore(t)
	s := store.NewGroupCommit(store.New(db, outbox.New(watermill.NopLogger{})), groupcommit.Config{})
	const orders, deliveries = 20, 3
	invoices := make([]domain.Invoice, 0, orders*deliveries)
	for range orders {
		orderID := uuid.NewString()
		for range deliveries {
			invoices = append(invoices, newInvoice(t, orderID))
		}
	}
	evts := &issued{}
	issuedBy := make([]bool, len(invoices))
	errs := make([]error, len(invoices))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, inv := range invoices {
		wg.Go(func() {
			<-start
			issuedBy[i], errs[i] = s.Issue(t.Context(), inv, evts.event(inv))
		})
	}
	close(start)
	wg.Wait()

	perOrder := map[string]int{}
	var winners []domain.Invoice
	for i, inv := range invoices {
		require.NoError(t, errs[i])
		if issuedBy[i] {
			perOrder[inv.OrderID]++
			winners = append(winners, inv)
		}
	}
	assert.Len(t, perOrder, orders)
	for id, n := range perOrder {
		assert.Equal(t, 1, n, "order %s", id)
	}
	assert.Equal(t, orders, testkit.CountRows(t, db, "invoices"))
	assert.ElementsMatch(t, evts.written(winners...), testkit.OutboxRows(t, db), "the event of each issued invoice, and no other")
}
