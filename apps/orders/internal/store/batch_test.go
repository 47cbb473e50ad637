package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/store"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// TestStore_CreateBatch gives one transaction every case a batch can hold,
// and checks that each call gets the answer it would get alone.
func TestStore_CreateBatch(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)

	// Committed before the batch: a key replayed with the same body, and one
	// reused with another body.
	earlier := newOrder(t, "c-earlier", 10)
	earlierEvt := placed(t, earlier)
	_, _, err := s.Create(t.Context(), earlier, &store.Idempotency{Key: "k-earlier", Hash: "h-1"}, earlierEvt)
	require.NoError(t, err)
	other := newOrder(t, "c-other", 20)
	otherEvt := placed(t, other)
	_, _, err = s.Create(t.Context(), other, &store.Idempotency{Key: "k-other", Hash: "h-1"}, otherEvt)
	require.NoError(t, err)

	plain, keyed, dup, clash, replay, reuse := newOrder(t, "c-1", 1), newOrder(t, "c-2", 2), newOrder(t, "c-2", 2),
		newOrder(t, "c-3", 3), newOrder(t, "c-earlier", 10), newOrder(t, "c-other", 99)
	plainEvt, keyedEvt, clashEvt := placed(t, plain), placed(t, keyed), placed(t, clash)
	got, err := s.CreateBatch(t.Context(), []store.BatchCreate{
		{Order: plain, Events: []any{plainEvt}},
		{Order: keyed, Idem: &store.Idempotency{Key: "k-new", Hash: "h-2"}, Events: []any{keyedEvt}},
		// The same key again in the same batch: a retry racing its original.
		{Order: dup, Idem: &store.Idempotency{Key: "k-new", Hash: "h-2"}, Events: []any{placed(t, dup)}},
		// And once more with another body: a client bug.
		{Order: clash, Idem: &store.Idempotency{Key: "k-new", Hash: "h-3"}, Events: []any{clashEvt}},
		{Order: replay, Idem: &store.Idempotency{Key: "k-earlier", Hash: "h-1"}, Events: []any{placed(t, replay)}},
		{Order: reuse, Idem: &store.Idempotency{Key: "k-other", Hash: "h-2"}, Events: []any{placed(t, reuse)}},
	})
	require.NoError(t, err)
	require.Len(t, got, 6)

	assert.Equal(t, store.BatchCreated{Order: plain, Created: true}, got[0])
	assert.Equal(t, store.BatchCreated{Order: keyed, Created: true}, got[1])
	assert.Equal(t, store.BatchCreated{Order: keyed}, got[2], "the batch's first request with the key wins")
	assert.ErrorIs(t, got[3].Err, domain.ErrIdempotencyKeyReused)
	assert.Equal(t, store.BatchCreated{Order: earlier}, got[4], "an earlier request's order is replayed")
	assert.ErrorIs(t, got[5].Err, domain.ErrIdempotencyKeyReused)

	assert.Equal(t, 4, testkit.CountRows(t, db, "orders"), "earlier, other, plain, keyed")
	assert.Equal(t, []testkit.OutboxRow{
		{Topic: "events.OrderPlaced", EventID: earlierEvt.ID},
		{Topic: "events.OrderPlaced", EventID: otherEvt.ID},
		{Topic: "events.OrderPlaced", EventID: plainEvt.ID},
		{Topic: "events.OrderPlaced", EventID: keyedEvt.ID},
	}, testkit.OutboxRows(t, db), "one event per created order, in the batch's order")
	for _, o := range []domain.Order{plain, keyed} {
		stored, err := s.Get(t.Context(), o.ID)
		require.NoError(t, err)
		assert.Equal(t, o, stored)
	}
}

// TestStore_CreateBatch_fails_as_a_whole checks that a batch is one
// transaction: a duplicate id fails it, and nothing of it remains.
func TestStore_CreateBatch_fails_as_a_whole(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	a, b := newOrder(t, "c-1", 1), newOrder(t, "c-1", 2)
	b.ID = a.ID
	_, err := s.CreateBatch(t.Context(), []store.BatchCreate{
		{Order: a, Events: []any{placed(t, a)}},
		{Order: b, Events: []any{placed(t, b)}},
	})
	require.Error(t, err)
	assert.Equal(t, 0, testkit.CountRows(t, db, "orders"))
	assert.Equal(t, 0, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_MarkBatch(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	a, b, done := newOrder(t, "c-1", 1), newOrder(t, "c-1", 2), newOrder(t, "c-1", 3)
	for _, o := range []domain.Order{a, b, done} {
		_, _, err := s.Create(t.Context(), o, nil)
		require.NoError(t, err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	doneInvoice := uuid.NewString()
	_, changed, err := s.MarkInvoiced(t.Context(), done.ID, doneInvoice, at)
	require.NoError(t, err)
	require.True(t, changed)

	invA, invB := uuid.NewString(), uuid.NewString()
	got, err := s.MarkBatch(t.Context(), []store.BatchMark{
		{ID: a.ID, InvoiceID: invA, At: at},
		{ID: b.ID, InvoiceID: invB, At: at},
		{ID: a.ID, InvoiceID: invA, At: at.Add(time.Second)}, // a redelivery in the same batch
		{ID: done.ID, InvoiceID: doneInvoice, At: at},        // invoiced before
		{ID: a.ID, InvoiceID: uuid.NewString(), At: at},      // another invoice for a
		{ID: uuid.NewString(), InvoiceID: uuid.NewString(), At: at},
	})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, false, false, false, false}, got,
		"each order changes once; everything else is left to MarkInvoiced's rules")
	for o, inv := range map[string]string{a.ID: invA, b.ID: invB, done.ID: doneInvoice} {
		stored, err := s.Get(t.Context(), o)
		require.NoError(t, err)
		assert.Equal(t, domain.StatusInvoiced, stored.Status)
		assert.Equal(t, inv, stored.InvoiceID)
	}
}

// TestStore_group_commit_under_concurrency places and invoices orders from
// many goroutines at once, so that calls share transactions, and checks
// every call's own outcome.
func TestStore_group_commit_under_concurrency(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	const n = 64
	orders := make([]domain.Order, n)
	for i := range orders {
		orders[i] = newOrder(t, "c-many", int64(i+1))
	}
	var wg sync.WaitGroup
	for i, o := range orders {
		wg.Go(func() {
			var idem *store.Idempotency
			if i%2 == 0 { // every key twice: i and i+1 share one
				idem = &store.Idempotency{Key: uuid.NewSHA1(uuid.Nil, []byte{byte(i)}).String(), Hash: "h"}
			} else {
				idem = &store.Idempotency{Key: uuid.NewSHA1(uuid.Nil, []byte{byte(i - 1)}).String(), Hash: "h"}
			}
			got, created, err := s.Create(t.Context(), o, idem, placed(t, o))
			assert.NoError(t, err)
			if created {
				assert.Equal(t, o, got)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, n/2, testkit.CountRows(t, db, "orders"), "one order per key")
	assert.Equal(t, n/2, testkit.CountRows(t, db, `"watermill_outbox"`), "one event per order")

	var ids []string
	require.NoError(t, db.NewRaw("SELECT id FROM orders").Scan(t.Context(), &ids))
	var mu sync.Mutex
	changedCount := 0
	for _, id := range ids {
		for range 2 { // each InvoiceIssued delivered twice
			wg.Go(func() {
				_, changed, err := s.MarkInvoiced(t.Context(), id, uuid.NewSHA1(uuid.Nil, []byte(id)).String(), time.Now())
				assert.NoError(t, err)
				if changed {
					mu.Lock()
					changedCount++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	assert.Equal(t, n/2, changedCount, "each order is marked once")
	var pending int
	require.NoError(t, db.NewRaw("SELECT count(*) FROM orders WHERE status = 'pending'").Scan(t.Context(), &pending))
	assert.Zero(t, pending)
}
