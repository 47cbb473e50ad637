package store_test

import (
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/apps/invoices/internal/store"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// newStore returns a store on a fresh, migrated database of its own.
func newStore(tb testing.TB) (*store.Store, *bun.DB) {
	tb.Helper()
	url := testkit.NewDatabase(tb)
	db, err := database.Open(tb.Context(), database.Config{URL: url, Name: "invoices"})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	require.NoError(tb, database.Migrate(tb.Context(), db, []fs.FS{store.Migrations(), outbox.Migrations()}, nil))
	return store.New(db, outbox.New(watermill.NopLogger{})), db
}

// newInvoice returns an invoice of orderID. Times are truncated to
// PostgreSQL's microseconds so that stored and returned invoices compare
// equal.
func newInvoice(tb testing.TB, orderID string) domain.Invoice {
	tb.Helper()
	id, err := uuid.NewV7()
	require.NoError(tb, err)
	return domain.Invoice{
		ID: id.String(), OrderID: orderID, CustomerID: "c-1", Amount: 1999, Currency: "EUR",
		IssuedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// issued builds the InvoiceIssued event of an invoice, as the app does, and
// records the last event id it made for each invoice.
type issued struct {
	mu   sync.Mutex
	last map[string]string // invoice id → event id
}

func (e *issued) event(inv domain.Invoice) any {
	evt := &events.InvoiceIssued{
		Header:    events.Header{ID: uuid.NewString(), OccurredAt: inv.IssuedAt},
		InvoiceID: inv.ID, OrderID: inv.OrderID, CustomerID: inv.CustomerID,
		Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt,
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last == nil {
		e.last = make(map[string]string)
	}
	e.last[inv.ID] = evt.ID
	return evt
}

// written is the outbox a store holds after issuing invs (in this order)
// and nothing else.
func (e *issued) written(invs ...domain.Invoice) []testkit.OutboxRow {
	e.mu.Lock()
	defer e.mu.Unlock()
	rows := make([]testkit.OutboxRow, len(invs))
	for i, inv := range invs {
		rows[i] = testkit.OutboxRow{Topic: "events.InvoiceIssued", EventID: e.last[inv.ID]}
	}
	return rows
}

func TestStore_Issue_is_idempotent_per_order(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	orderID := uuid.NewString()
	first := newInvoice(t, orderID)
	evts := &issued{}

	ok, err := s.Issue(t.Context(), first, evts.event(first))
	require.NoError(t, err)
	assert.True(t, ok, "the first Issue issues")

	// A redelivered OrderPlaced makes a new invoice id for the same order.
	second := newInvoice(t, orderID)
	ok, err = s.Issue(t.Context(), second, evts.event(second))
	require.NoError(t, err)
	assert.False(t, ok, "the second Issue does nothing")

	assert.Equal(t, 1, testkit.CountRows(t, db, "invoices"))
	assert.Equal(t, evts.written(first), testkit.OutboxRows(t, db), "only the inserted invoice's event is written")
	byOrder, err := s.ByOrder(t.Context(), orderID)
	require.NoError(t, err)
	assert.Equal(t, []domain.Invoice{first}, byOrder, "the first invoice stays")
	_, err = s.Get(t.Context(), second.ID)
	assert.ErrorIs(t, err, domain.ErrInvoiceNotFound)
}

func TestStore_Issue_other_orders_are_independent(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	evts := &issued{}
	for range 3 {
		inv := newInvoice(t, uuid.NewString())
		ok, err := s.Issue(t.Context(), inv, evts.event(inv))
		require.NoError(t, err)
		assert.True(t, ok)
	}
	assert.Equal(t, 3, testkit.CountRows(t, db, "invoices"))
	assert.Equal(t, 3, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_Issue_rolls_back_the_invoice_when_the_outbox_fails(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	inv := newInvoice(t, uuid.NewString())

	// A channel cannot be marshaled, so appending it to the outbox fails
	// after the invoice row was inserted.
	// Its result is checked by TestStore_Issue_reports_false_on_failure.
	_, err := s.Issue(t.Context(), inv, struct{ C chan int }{C: make(chan int)})

	require.Error(t, err)
	assert.Zero(t, testkit.CountRows(t, db, "invoices"), "the invoice is rolled back with the outbox append")
	assert.Zero(t, testkit.CountRows(t, db, `"watermill_outbox"`))

	// The order can still be invoiced.
	ok, err := s.Issue(t.Context(), inv, (&issued{}).event(inv))
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestStore_Issue_reports_false_on_failure(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)

	ok, err := s.Issue(t.Context(), newInvoice(t, uuid.NewString()), struct{ C chan int }{C: make(chan int)})

	require.Error(t, err)
	assert.False(t, ok, "nothing was issued")
}

func TestStore_Issue_concurrent_redeliveries_issue_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	const n = 10
	orderID := uuid.NewString()
	invoices := make([]domain.Invoice, n)
	for i := range n {
		invoices[i] = newInvoice(t, orderID)
	}
	evts := &issued{}
	oks := make([]bool, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			oks[i], errs[i] = s.Issue(t.Context(), invoices[i], evts.event(invoices[i]))
		})
	}
	close(start)
	wg.Wait()

	var issuedCount int
	var winner domain.Invoice
	for i := range n {
		require.NoError(t, errs[i], "delivery %d", i)
		if oks[i] {
			issuedCount++
			winner = invoices[i]
		}
	}
	require.Equal(t, 1, issuedCount, "exactly one delivery issues the invoice")
	assert.Equal(t, 1, testkit.CountRows(t, db, "invoices"))
	assert.Equal(t, 1, testkit.CountRows(t, db, `"watermill_outbox"`))
	assert.Equal(t, evts.written(winner), testkit.OutboxRows(t, db))
	byOrder, err := s.ByOrder(t.Context(), orderID)
	require.NoError(t, err)
	assert.Equal(t, []domain.Invoice{winner}, byOrder)
}

func TestStore_Get(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	known := newInvoice(t, uuid.NewString())
	ok, err := s.Issue(t.Context(), known, (&issued{}).event(known))
	require.NoError(t, err)
	require.True(t, ok)

	tests := []struct {
		name    string
		id      string
		want    domain.Invoice
		wantErr error
	}{
		{name: "known", id: known.ID, want: known},
		{name: "unknown", id: uuid.NewString(), wantErr: domain.ErrInvoiceNotFound},
		{name: "an order id is not an invoice id", id: known.OrderID, wantErr: domain.ErrInvoiceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Get(t.Context(), tt.id)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestStore_ByOrder(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	known := newInvoice(t, uuid.NewString())
	other := newInvoice(t, uuid.NewString())
	for _, inv := range []domain.Invoice{known, other} {
		ok, err := s.Issue(t.Context(), inv, (&issued{}).event(inv))
		require.NoError(t, err)
		require.True(t, ok)
	}

	tests := []struct {
		name    string
		orderID string
		want    []domain.Invoice
	}{
		{name: "invoiced order", orderID: known.OrderID, want: []domain.Invoice{known}},
		{name: "other invoiced order", orderID: other.OrderID, want: []domain.Invoice{other}},
		{name: "order without invoice", orderID: uuid.NewString(), want: []domain.Invoice{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.ByOrder(t.Context(), tt.orderID)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
