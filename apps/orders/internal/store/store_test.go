package store_test

import (
	"errors"
	"io/fs"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/apps/orders/internal/store"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// newStore returns a store on a fresh, migrated database of its own.
func newStore(tb testing.TB) (*store.Store, *bun.DB) {
	tb.Helper()
	url := testkit.NewDatabase(tb)
	db, err := database.Open(tb.Context(), database.Config{URL: url, Name: "orders"})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	require.NoError(tb, database.Migrate(tb.Context(), db, []fs.FS{store.Migrations(), outbox.Migrations()}, nil))
	return store.New(db, outbox.New(watermill.NopLogger{})), db
}

// newOrder returns a pending order with a UUIDv7 id. Times are truncated to
// PostgreSQL's microseconds so that stored and returned orders compare equal.
func newOrder(tb testing.TB, customer string, amount int64) domain.Order {
	tb.Helper()
	id, err := uuid.NewV7()
	require.NoError(tb, err)
	now := time.Now().UTC().Truncate(time.Microsecond)
	return domain.Order{
		ID: id.String(), CustomerID: customer, Amount: amount, Currency: "EUR",
		Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
	}
}

func placed(tb testing.TB, o domain.Order) *events.OrderPlaced {
	tb.Helper()
	return &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: o.CreatedAt},
		OrderID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency, PlacedAt: o.CreatedAt,
	}
}

func TestStore_Create(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		name string
		idem *app.Idempotency
	}{
		{name: "without idempotency key", idem: nil},
		{name: "with idempotency key", idem: &app.Idempotency{Key: "key-1", Hash: "hash-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := newStore(t)
			o := newOrder(t, "c-1", 1999)
			evt := placed(t, o)

			got, created, err := s.Create(t.Context(), o, tt.idem, evt)

			require.NoError(t, err)
			assert.True(t, created)
			assert.Equal(t, o, got)
			stored, err := s.Get(t.Context(), o.ID)
			require.NoError(t, err)
			assert.Equal(t, o, stored)
			assert.Equal(t, 1, testkit.CountRows(t, db, "orders"))
			assert.Equal(t, []testkit.OutboxRow{{Topic: "events.OrderPlaced", EventID: evt.ID}}, testkit.OutboxRows(t, db),
				"one OrderPlaced in the outbox, keyed by the event id")
		})
	}
}

func TestStore_Create_rolls_back_the_order_when_the_outbox_fails(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	o := newOrder(t, "c-1", 1)

	// A channel cannot be marshaled, so appending it to the outbox fails
	// after the order row was inserted.
	_, created, err := s.Create(t.Context(), o, nil, struct{ C chan int }{C: make(chan int)})

	require.Error(t, err)
	assert.False(t, created)
	assert.Zero(t, testkit.CountRows(t, db, "orders"), "the order is rolled back with the outbox append")
	assert.Zero(t, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_Create_duplicate_id_fails(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	o := newOrder(t, "c-1", 1)
	_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
	require.NoError(t, err)

	_, created, err := s.Create(t.Context(), o, nil, placed(t, o))

	require.Error(t, err)
	assert.False(t, created)
	assert.Equal(t, 1, testkit.CountRows(t, db, "orders"))
	assert.Equal(t, 1, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_Create_idempotency(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		name    string
		second  app.Idempotency
		wantErr error
	}{
		{name: "same key same hash replays", second: app.Idempotency{Key: "key-1", Hash: "hash-1"}},
		{name: "same key other hash is refused", second: app.Idempotency{Key: "key-1", Hash: "hash-2"}, wantErr: domain.ErrIdempotencyKeyReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, db := newStore(t)
			first := newOrder(t, "c-1", 1999)
			firstEvt := placed(t, first)
			_, created, err := s.Create(t.Context(), first, &app.Idempotency{Key: "key-1", Hash: "hash-1"}, firstEvt)
			require.NoError(t, err)
			require.True(t, created)

			second := newOrder(t, "c-1", 1999)
			got, created, err := s.Create(t.Context(), second, &tt.second, placed(t, second))

			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Equal(t, domain.Order{}, got)
			} else {
				require.NoError(t, err)
				assert.Equal(t, first, got, "the first request's order")
			}
			assert.False(t, created)
			assert.Equal(t, 1, testkit.CountRows(t, db, "orders"))
			assert.Equal(t, []testkit.OutboxRow{{Topic: "events.OrderPlaced", EventID: firstEvt.ID}}, testkit.OutboxRows(t, db),
				"no second event")
			_, err = s.Get(t.Context(), second.ID)
			assert.ErrorIs(t, err, domain.ErrOrderNotFound)
		})
	}
}

func TestStore_Create_other_keys_are_independent(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	for _, key := range []string{"key-a", "key-b"} {
		o := newOrder(t, "c-1", 1)
		_, created, err := s.Create(t.Context(), o, &app.Idempotency{Key: key, Hash: "same-hash"}, placed(t, o))
		require.NoError(t, err)
		assert.True(t, created, key)
	}
	// Orders without a key never collide: NULLs are distinct.
	for range 2 {
		o := newOrder(t, "c-1", 1)
		_, created, err := s.Create(t.Context(), o, nil, placed(t, o))
		require.NoError(t, err)
		assert.True(t, created)
	}
	assert.Equal(t, 4, testkit.CountRows(t, db, "orders"))
	assert.Equal(t, 4, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_Create_concurrent_retries_create_one_order(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, db := newStore(t)
	const n = 20
	idem := &app.Idempotency{Key: "retry-key", Hash: "hash-1"}

	type result struct {
		order   domain.Order
		created bool
		err     error
	}
	orders := make([]domain.Order, n)
	evts := make([]*events.OrderPlaced, n)
	for i := range n {
		orders[i] = newOrder(t, "c-1", 1999)
		evts[i] = placed(t, orders[i])
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got, created, err := s.Create(t.Context(), orders[i], idem, evts[i])
			results[i] = result{got, created, err}
		})
	}
	close(start)
	wg.Wait()

	var createdCount int
	var winner string
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		if r.created {
			createdCount++
			winner = r.order.ID
		}
	}
	require.Equal(t, 1, createdCount, "exactly one request creates the order")
	for i, r := range results {
		assert.Equal(t, winner, r.order.ID, "request %d sees the one order", i)
	}
	assert.Equal(t, 1, testkit.CountRows(t, db, "orders"))
	assert.Equal(t, 1, testkit.CountRows(t, db, `"watermill_outbox"`))
}

func TestStore_Get(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	known := newOrder(t, "c-1", 42)
	_, _, err := s.Create(t.Context(), known, nil, placed(t, known))
	require.NoError(t, err)

	tests := []struct {
		name    string
		id      string
		want    domain.Order
		wantErr error
	}{
		{name: "known", id: known.ID, want: known},
		{name: "unknown", id: uuid.NewString(), wantErr: domain.ErrOrderNotFound},
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

func TestStore_List(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	// Seven orders, alternately of two customers, created in id order.
	var all []domain.Order
	for i := range 7 {
		customer := "alice"
		if i%2 == 1 {
			customer = "bob"
		}
		o := newOrder(t, customer, int64(i+1))
		_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
		require.NoError(t, err)
		all = append(all, o)
	}
	newestFirst := func(customer string) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if customer == "" || all[i].CustomerID == customer {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}

	tests := []struct {
		name     string
		customer string
		limit    int
		want     [][]string // the pages, each newest first
	}{
		{name: "all in pages of 3", limit: 3, want: chunk(newestFirst(""), 3)},
		{name: "alice in pages of 3", customer: "alice", limit: 3, want: chunk(newestFirst("alice"), 3)},
		{name: "bob in pages of 3", customer: "bob", limit: 3, want: chunk(newestFirst("bob"), 3)},
		{name: "all in one page", limit: 100, want: [][]string{newestFirst("")}},
		{name: "one at a time", customer: "bob", limit: 1, want: chunk(newestFirst("bob"), 1)},
		{name: "unknown customer", customer: "carol", limit: 3, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var pages [][]string
			q := app.ListQuery{CustomerID: tt.customer, Limit: tt.limit}
			for range 10 {
				got, err := s.List(t.Context(), q)
				require.NoError(t, err)
				require.LessOrEqual(t, len(got), tt.limit)
				if len(got) == 0 {
					break
				}
				var ids []string
				for _, o := range got {
					if tt.customer != "" {
						assert.Equal(t, tt.customer, o.CustomerID)
					}
					ids = append(ids, o.ID)
				}
				pages = append(pages, ids)
				q.After = got[len(got)-1].ID
			}
			assert.Equal(t, tt.want, pages)
		})
	}

	t.Run("returns whole orders", func(t *testing.T) {
		t.Parallel()
		got, err := s.List(t.Context(), app.ListQuery{Limit: 1})
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, all[len(all)-1], got[0])
	})
}

// chunk splits ids into pages of n.
func chunk(ids []string, n int) [][]string {
	var out [][]string
	for len(ids) > 0 {
		k := min(n, len(ids))
		out = append(out, ids[:k])
		ids = ids[k:]
	}
	return out
}

func TestStore_Update(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	o := newOrder(t, "c-1", 1)
	_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
	require.NoError(t, err)
	invoiceID := uuid.NewString()
	at := o.CreatedAt.Add(time.Minute)
	markInvoiced := func(id string) func(*domain.Order) (bool, error) {
		return func(o *domain.Order) (bool, error) { return o.MarkInvoiced(id, at) }
	}

	require.NoError(t, s.Update(t.Context(), o.ID, markInvoiced(invoiceID)))
	got, err := s.Get(t.Context(), o.ID)
	require.NoError(t, err)
	want := o
	want.Status, want.InvoiceID, want.UpdatedAt = domain.StatusInvoiced, invoiceID, at
	assert.Equal(t, want, got)

	// A redelivered InvoiceIssued changes nothing.
	calls := 0
	require.NoError(t, s.Update(t.Context(), o.ID, func(o *domain.Order) (bool, error) {
		calls++
		return o.MarkInvoiced(invoiceID, at.Add(time.Hour))
	}))
	assert.Equal(t, 1, calls)
	again, err := s.Get(t.Context(), o.ID)
	require.NoError(t, err)
	assert.Equal(t, want, again, "the second identical update is a no-op")

	// Another invoice for the same order is refused and changes nothing.
	err = s.Update(t.Context(), o.ID, markInvoiced(uuid.NewString()))
	require.ErrorIs(t, err, domain.ErrAlreadyInvoiced)
	after, err := s.Get(t.Context(), o.ID)
	require.NoError(t, err)
	assert.Equal(t, want, after)
}

func TestStore_Update_errors(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	o := newOrder(t, "c-1", 1)
	_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
	require.NoError(t, err)
	errFn := errors.New("fn failed")

	tests := []struct {
		name    string
		id      string
		fn      func(*domain.Order) (bool, error)
		wantErr error
	}{
		{
			name:    "unknown order",
			id:      uuid.NewString(),
			fn:      func(*domain.Order) (bool, error) { return true, nil },
			wantErr: domain.ErrOrderNotFound,
		},
		{
			name: "fn error rolls back",
			id:   o.ID,
			fn: func(o *domain.Order) (bool, error) {
				o.Status = domain.StatusInvoiced
				return true, errFn
			},
			wantErr: errFn,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.Update(t.Context(), tt.id, tt.fn)
			require.ErrorIs(t, err, tt.wantErr)
			got, err := s.Get(t.Context(), o.ID)
			require.NoError(t, err)
			assert.Equal(t, o, got, "nothing changed")
		})
	}
}

func TestStore_Update_concurrent_updates_serialize(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	s, _ := newStore(t)
	o := newOrder(t, "c-1", 1)
	_, _, err := s.Create(t.Context(), o, nil, placed(t, o))
	require.NoError(t, err)
	const n = 10
	invoiceID := uuid.NewString()
	changed := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), o.ID, func(o *domain.Order) (bool, error) {
				c, err := o.MarkInvoiced(invoiceID, time.Now().UTC())
				changed[i] = c
				return c, err
			})
		})
	}
	wg.Wait()

	var changes int
	for i := range n {
		require.NoError(t, errs[i])
		if changed[i] {
			changes++
		}
	}
	assert.Equal(t, 1, changes, "the row lock lets exactly one update change the order")
	got, err := s.Get(t.Context(), o.ID)
	require.NoError(t, err)
	assert.Equal(t, domain.StatusInvoiced, got.Status)
	assert.Equal(t, invoiceID, got.InvoiceID)
}

// Idempotency keys belong to their customer: the same key from another
// customer is another order, and each customer's retry replays its own.
func TestStore_Create_keys_are_scoped_per_customer(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	for _, shared := range []bool{false, true} {
		t.Run("group commit "+strconv.FormatBool(shared), func(t *testing.T) {
			t.Parallel()
			plain, db := newStore(t)
			var s app.Store = plain
			if shared {
				s = store.NewGroupCommit(plain, groupcommit.Config{})
			}
			idem := &app.Idempotency{Key: "shared-key", Hash: "hash-1"}
			first := map[string]domain.Order{}
			for _, customer := range []string{"c-1", "c-2"} {
				o := newOrder(t, customer, 1999)
				got, created, err := s.Create(t.Context(), o, idem, placed(t, o))
				require.NoError(t, err)
				assert.True(t, created, "%s's first request with the key places an order", customer)
				assert.Equal(t, o, got)
				first[customer] = got
			}
			for _, customer := range []string{"c-1", "c-2"} {
				again := newOrder(t, customer, 1999)
				got, created, err := s.Create(t.Context(), again, idem, placed(t, again))
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, first[customer], got, "%s's retry replays %s's order", customer, customer)

				_, _, err = s.Create(t.Context(), again, &app.Idempotency{Key: idem.Key, Hash: "other body"}, placed(t, again))
				require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused, "%s: its key with another body", customer)
			}
			assert.Equal(t, 2, testkit.CountRows(t, db, "orders"))
			assert.Equal(t, 2, testkit.CountRows(t, db, `"watermill_outbox"`))
		})
	}
}

// The scoping migration runs on a database that has orders already, keeps
// them, and can run again after a start that was interrupted before it was
// recorded.
func TestMigrations_scope_idempotency_keys_per_customer(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	const scoping = "20251201000001_scope_idempotency_keys_per_customer.up.sql"
	url := testkit.NewDatabase(t)
	db, err := database.Open(t.Context(), database.Config{URL: url, Name: "orders"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })

	before := fstest.MapFS{}
	require.NoError(t, fs.WalkDir(store.Migrations(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name >= scoping {
			return err
		}
		b, err := fs.ReadFile(store.Migrations(), name)
		before[name] = &fstest.MapFile{Data: b}
		return err
	}))
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{before}, nil))
	_, err = db.ExecContext(t.Context(), `INSERT INTO orders (id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)
		VALUES (gen_random_uuid(), 'c-1', 1, 'EUR', 'pending', 'key-1', 'h', now(), now()),
		       (gen_random_uuid(), 'c-2', 1, 'EUR', 'pending', 'key-2', 'h', now(), now())`)
	require.NoError(t, err)

	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{store.Migrations(), outbox.Migrations()}, nil))
	constraints := func() []string {
		var names []string
		require.NoError(t, db.NewRaw(`SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'u' ORDER BY conname`).Scan(t.Context(), &names))
		return names
	}
	assert.Equal(t, []string{"orders_customer_id_idempotency_key_key"}, constraints())
	assert.Equal(t, 2, testkit.CountRows(t, db, "orders"))

	// As if the start had died after the constraint, before the record.
	_, err = db.ExecContext(t.Context(), `DELETE FROM bun_migrations WHERE name = '20251201000001'`)
	require.NoError(t, err)
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{store.Migrations(), outbox.Migrations()}, nil))
	assert.Equal(t, []string{"orders_customer_id_idempotency_key_key"}, constraints())
	var indexes int
	require.NoError(t, db.NewRaw(`SELECT count(*) FROM pg_indexes WHERE tablename = 'orders' AND indexdef LIKE '%(customer_id, idempotency_key)%'`).Scan(t.Context(), &indexes))
	assert.Equal(t, 1, indexes, "no leftover index")

	s := store.New(db, outbox.New(watermill.NopLogger{}))
	o := newOrder(t, "c-2", 1)
	_, created, err := s.Create(t.Context(), o, &app.Idempotency{Key: "key-1", Hash: "h"}, placed(t, o))
	require.NoError(t, err)
	assert.True(t, created, "c-1's key is free for c-2")
}
