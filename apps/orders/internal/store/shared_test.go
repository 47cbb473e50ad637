package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/store"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// With group commit (batch.go), concurrent creates keep every
// outcome a transaction of their own would have: new orders are created
// with their events, retries of one key make one order, a key reused with
// another body is refused, and a failing call fails alone.
func TestStore_Create_in_shared_transactions(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	_, db := newStore(t)
	reader := metric.NewManualReader()
	sizes, err := metric.NewMeterProvider(metric.WithReader(reader)).Meter("test").Int64Histogram("sizes")
	require.NoError(t, err)
	s := store.NewGroupCommit(store.New(db, outbox.New(watermill.NopLogger{})), groupcommit.Config{Sizes: sizes})
	const distinct, retries = 40, 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	created := make([]bool, distinct+retries+2)
	errs := make([]error, len(created))
	run := func(i int, o domain.Order, idem *app.Idempotency, evs ...any) {
		wg.Go(func() {
			<-start
			_, created[i], errs[i] = s.Create(t.Context(), o, idem, evs...)
		})
	}
	for i := range distinct {
		o := newOrder(t, "c-1", int64(i+1))
		run(i, o, &app.Idempotency{Key: fmt.Sprintf("key-%d", i), Hash: "h"}, placed(t, o))
	}
	for i := range retries {
		o := newOrder(t, "c-2", 1)
		run(distinct+i, o, &app.Idempotency{Key: "retried", Hash: "h"}, placed(t, o))
	}
	reused := newOrder(t, "c-2", 1) // the same customer: keys are scoped per customer
	run(distinct+retries, reused, &app.Idempotency{Key: "retried", Hash: "other body"}, placed(t, reused))
	failing := newOrder(t, "c-4", 1)
	run(distinct+retries+1, failing, nil, struct{ C chan int }{C: make(chan int)}) // cannot be marshaled
	close(start)
	wg.Wait()

	for i := range distinct {
		require.NoError(t, errs[i])
		assert.True(t, created[i], "order %d", i)
	}
	// The key "retried" goes to whichever of its requests came first: the
	// retries with their one body, or the request with another body. The
	// others get the first one's order, or are refused.
	var keyCreated int
	reusedWon := errs[distinct+retries] == nil
	for i := distinct; i <= distinct+retries; i++ {
		if created[i] {
			keyCreated++
		}
		switch {
		case i == distinct+retries && !reusedWon:
			require.ErrorIs(t, errs[i], domain.ErrIdempotencyKeyReused)
		case i < distinct+retries && reusedWon:
			require.ErrorIs(t, errs[i], domain.ErrIdempotencyKeyReused)
		default:
			require.NoError(t, errs[i])
		}
	}
	assert.Equal(t, 1, keyCreated, "one order for the key")
	require.Error(t, errs[distinct+retries+1], "the failing call fails")
	assert.False(t, created[distinct+retries+1])
	assert.Equal(t, distinct+1, testkit.CountRows(t, db, "orders"))
	assert.Equal(t, distinct+1, testkit.CountRows(t, db, `"watermill_outbox"`), "one event per order")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	h, ok := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[int64])
	require.True(t, ok)
	largest, _ := h.DataPoints[0].Max.Value()
	assert.Greater(t, largest, int64(1), "some transactions were shared")
}

// A status update batch finds its orders by primary key however small the
// table was when the connection first ran it: PostgreSQL plans it for each
// batch (markInvoiced), where a plan cached on a near-empty table would
// read the whole table for every batch until the table is next analysed.
func TestGroupCommit_MarkInvoiced_reads_by_key_once_the_table_has_grown(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	plain, db := newStore(t)
	db.SetMaxOpenConns(1) // one connection: one statement cache, and its statistics flushed below
	s := store.NewGroupCommit(plain, groupcommit.Config{})
	placeAndMark := func(n int) {
		t.Helper()
		for i := range n {
			o := newOrder(t, "c-1", int64(i+1))
			_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
			require.NoError(t, err)
			_, changed, err := s.MarkInvoiced(t.Context(), o.ID, uuid.NewString(), time.Now().UTC())
			require.NoError(t, err)
			require.True(t, changed)
		}
	}
	placeAndMark(10) // past the five runs after which PostgreSQL may keep a generic plan
	_, err := db.ExecContext(t.Context(), `INSERT INTO orders (id, customer_id, amount, currency, status, created_at, updated_at)
		SELECT gen_random_uuid(), 'bulk', 1, 'EUR', 'pending', now(), now() FROM generate_series(1, 20000)`)
	require.NoError(t, err)
	scans := func() (seq, idx int64) {
		t.Helper()
		// This backend's statistics reach the view once its statement ends.
		_, err := db.ExecContext(t.Context(), `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		require.NoError(t, db.QueryRowContext(t.Context(),
			`SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'orders'`).Scan(&seq, &idx))
		return seq, idx
	}
	seqBefore, idxBefore := scans()
	placeAndMark(5)
	seqAfter, idxAfter := scans()
	assert.Equal(t, seqBefore, seqAfter, "no status update read the whole table")
	assert.GreaterOrEqual(t, idxAfter-idxBefore, int64(5), "each found its order by key")
}
