package store_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
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
