// Package store persists orders in PostgreSQL with bun, and appends their
// events to the transactional outbox in the same transaction.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/messaging"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the store's SQL migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists at compile time
	}
	return sub
}

// Store is the orders store.
//
// Creating an order and marking one invoiced are group-committed (see
// pkg/groupcommit): calls that arrive while earlier transactions are in
// flight share the next one, one statement per table for the whole batch,
// so that under load many orders cost one commit.
type Store struct {
	db     *bun.DB
	outbox messaging.Outbox
	tracer trace.Tracer // spans of the statements bun does not send (nil: none)
	create *groupcommit.Committer[createCall, createResult]
	mark   *groupcommit.Committer[markCall, markResult]
}

// New returns a store on db that appends events to outbox. batching
// instruments its group commits (observability.Telemetry.Batching) and may
// set their size and concurrency; the store names each operation.
func New(db *bun.DB, outbox messaging.Outbox, batching groupcommit.Config) *Store {
	s := &Store{db: db, outbox: outbox, tracer: batching.Tracer}
	createCfg, markCfg := batching, batching
	createCfg.Name = "orders.create"
	markCfg.Name = "orders.mark_invoiced"
	s.create = groupcommit.New(s.createBatch, createCfg)
	s.mark = groupcommit.New(s.markBatch, markCfg)
	return s
}

type orderRow struct {
	bun.BaseModel `bun:"table:orders"`

	ID             string    `bun:"id,pk,type:uuid"`
	CustomerID     string    `bun:"customer_id"`
	Amount         int64     `bun:"amount"`
	Currency       string    `bun:"currency"`
	Status         string    `bun:"status"`
	InvoiceID      *string   `bun:"invoice_id,type:uuid"`
	IdempotencyKey *string   `bun:"idempotency_key"`
	RequestHash    *string   `bun:"request_hash"`
	CreatedAt      time.Time `bun:"created_at"`
	UpdatedAt      time.Time `bun:"updated_at"`
}

func toRow(o domain.Order) *orderRow {
	r := &orderRow{
		ID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency,
		Status: string(o.Status), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	if o.InvoiceID != "" {
		r.InvoiceID = &o.InvoiceID
	}
	return r
}

func (r *orderRow) toDomain() domain.Order {
	o := domain.Order{
		ID: r.ID, CustomerID: r.CustomerID, Amount: r.Amount, Currency: r.Currency,
		Status: domain.Status(r.Status), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.InvoiceID != nil {
		o.InvoiceID = *r.InvoiceID
	}
	return o
}

// Idempotency identifies a request that may be retried: its key and a hash
// of its body.
type Idempotency struct {
	Key  string
	Hash string
}

// Create inserts the order and appends its events to the outbox in one
// transaction. With an idempotency key already used by an earlier request,
// it inserts nothing and returns that request's order (created is false), or
// domain.ErrIdempotencyKeyReused when the bodies differ.
func (s *Store) Create(ctx context.Context, o domain.Order, idem *Idempotency, events ...any) (got domain.Order, created bool, err error) {
	res, err := s.create.Do(ctx, createCall{order: o, idem: idem, events: events})
	if err != nil {
		return domain.Order{}, false, err
	}
	return res.order, res.created, nil
}

type createCall struct {
	order  domain.Order
	idem   *Idempotency
	events []any
}

type createResult struct {
	order   domain.Order
	created bool
}

// insertOrders inserts a batch of orders in one statement (one text for
// every batch size, so it is prepared once per connection). A row whose
// idempotency key exists, or appears earlier in the batch, is skipped;
// RETURNING tells which were inserted.
const insertOrders = `INSERT INTO orders (id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)
SELECT id, customer_id, amount, currency, status, NULLIF(idempotency_key, ''), NULLIF(request_hash, ''), created_at, updated_at
FROM unnest(?::uuid[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::timestamptz[])
  AS t(id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`

// insertNewOrders inserts a batch of orders that must all be new, with the
// outbox rows of their events prepended (messaging.OutboxRows.With): one
// statement. An idempotency key that is taken, or repeated in the batch,
// fails it as a whole with a unique violation.
func insertNewOrders(p int) string {
	return fmt.Sprintf(`INSERT INTO orders (id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)
SELECT id::uuid, customer_id, amount, currency, status, NULLIF(idempotency_key, ''), NULLIF(request_hash, ''), created_at, updated_at
FROM unnest($%d::text[], $%d::text[], $%d::bigint[], $%d::text[], $%d::text[], $%d::text[], $%d::text[], $%d::timestamptz[], $%d::timestamptz[])
  AS t(id, customer_id, amount, currency, status, idempotency_key, request_hash, created_at, updated_at)`,
		p, p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8)
}

// createBatch runs a batch of Create calls. The usual batch, all of whose
// orders are new, is one statement that inserts the orders and their events
// (atomic without a transaction block, so one round trip and one commit).
// If an idempotency key is taken, that statement fails and writes nothing,
// and the batch runs again as a transaction that tells new orders from
// replays (createBatchTx). The events of such a batch are then marshaled
// twice, so their traces show two "create" spans, of which the second is
// the one written.
func (s *Store) createBatch(ctx context.Context, calls []groupcommit.Item[createCall]) ([]groupcommit.Result[createResult], error) {
	cols := newOrderColumns(calls)
	rows, err := s.outbox.Rows()
	if err != nil {
		return nil, err
	}
	results := make([]groupcommit.Result[createResult], len(calls))
	for i, c := range calls {
		if err := rows.Add(c.Ctx, c.In.events...); err != nil {
			return nil, err
		}
		results[i].Out = createResult{order: c.In.order, created: true}
	}
	q, args, err := rows.With(insertNewOrders, cols.values()...)
	if err != nil {
		return nil, err
	}
	err = database.Exec(ctx, s.db, s.tracer, database.Statement{Operation: "INSERT", Table: "orders", Query: q, Args: args})
	if database.IsUniqueViolation(err) {
		return s.createBatchTx(ctx, calls, cols)
	}
	if err != nil {
		return nil, fmt.Errorf("insert %d orders: %w", len(calls), err)
	}
	if rows.Len() > 0 {
		s.outbox.Committed()
	}
	return results, nil
}

// orderColumns are a batch's orders column by column: the unnest arguments
// of both inserts, in their order (values).
type orderColumns struct {
	ids, customers, currencies, statuses, keys, hashes []string
	amounts                                            []int64
	created, updated                                   []time.Time
}

func newOrderColumns(calls []groupcommit.Item[createCall]) orderColumns {
	n := len(calls)
	c := orderColumns{
		ids: make([]string, n), customers: make([]string, n), currencies: make([]string, n), statuses: make([]string, n),
		keys: make([]string, n), hashes: make([]string, n), amounts: make([]int64, n),
		created: make([]time.Time, n), updated: make([]time.Time, n),
	}
	for i, call := range calls {
		o := call.In.order
		c.ids[i], c.customers[i], c.amounts[i], c.currencies[i], c.statuses[i] = o.ID, o.CustomerID, o.Amount, o.Currency, string(o.Status)
		c.created[i], c.updated[i] = o.CreatedAt, o.UpdatedAt
		if call.In.idem != nil {
			c.keys[i], c.hashes[i] = call.In.idem.Key, call.In.idem.Hash
		}
	}
	return c
}

func (c orderColumns) values() []any {
	return []any{c.ids, c.customers, c.amounts, c.currencies, c.statuses, c.keys, c.hashes, c.created, c.updated}
}

// createBatchTx runs a batch of Create calls in one transaction: the orders
// in one INSERT that skips taken idempotency keys, their events in one
// outbox INSERT. It answers the calls whose key is taken (replay).
func (s *Store) createBatchTx(ctx context.Context, calls []groupcommit.Item[createCall], cols orderColumns) ([]groupcommit.Result[createResult], error) {
	n := len(calls)
	results := make([]groupcommit.Result[createResult], n)
	var appended bool
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var inserted []string
		if err := tx.NewRaw(insertOrders, database.Arrays(cols.values()...)...).Scan(ctx, &inserted); err != nil {
			return fmt.Errorf("insert %d orders: %w", n, err)
		}
		isNew := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			isNew[id] = true
		}
		w, err := s.outbox.Writer(tx.Tx)
		if err != nil {
			return err
		}
		for i, c := range calls {
			if !isNew[c.In.order.ID] {
				// Skipped: its idempotency key's first request committed
				// (a concurrent one waited on the unique index and lands
				// here too), or came earlier in this batch.
				if results[i], err = s.replay(ctx, tx, c.In); err != nil {
					return err
				}
				continue
			}
			if err := w.Add(c.Ctx, c.In.events...); err != nil {
				return err
			}
			results[i].Out = createResult{order: c.In.order, created: true}
			appended = appended || len(c.In.events) > 0
		}
		return w.Flush(ctx)
	})
	if err != nil {
		return nil, err
	}
	if appended {
		s.outbox.Committed()
	}
	return results, nil
}

// replay answers a Create whose order was not inserted because its
// idempotency key is taken: the key's order when the bodies match.
func (s *Store) replay(ctx context.Context, tx bun.Tx, c createCall) (groupcommit.Result[createResult], error) {
	if c.idem == nil {
		return groupcommit.Result[createResult]{}, fmt.Errorf("order %s was not inserted", c.order.ID)
	}
	existing := new(orderRow)
	if err := tx.NewSelect().Model(existing).Where("idempotency_key = ?", c.idem.Key).Scan(ctx); err != nil {
		return groupcommit.Result[createResult]{}, fmt.Errorf("select order by idempotency key: %w", err)
	}
	if existing.RequestHash == nil || *existing.RequestHash != c.idem.Hash {
		return groupcommit.Result[createResult]{Err: domain.ErrIdempotencyKeyReused}, nil
	}
	return groupcommit.Result[createResult]{Out: createResult{order: existing.toDomain()}}, nil
}

// Get returns the order with id, or domain.ErrOrderNotFound.
func (s *Store) Get(ctx context.Context, id string) (domain.Order, error) {
	row := new(orderRow)
	err := s.db.NewSelect().Model(row).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Order{}, domain.ErrOrderNotFound
	}
	if err != nil {
		return domain.Order{}, fmt.Errorf("select order %s: %w", id, err)
	}
	return row.toDomain(), nil
}

// ListQuery selects a page of orders, newest first.
type ListQuery struct {
	CustomerID string // optional
	After      string // the last id of the previous page (keyset cursor)
	Limit      int
}

// List returns up to q.Limit orders older than q.After.
func (s *Store) List(ctx context.Context, q ListQuery) ([]domain.Order, error) {
	var rows []orderRow
	sel := s.db.NewSelect().Model(&rows).OrderExpr("id DESC").Limit(int64(q.Limit))
	if q.CustomerID != "" {
		sel = sel.Where("customer_id = ?", q.CustomerID)
	}
	if q.After != "" {
		sel = sel.Where("id < ?", q.After)
	}
	if err := sel.Scan(ctx); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	out := make([]domain.Order, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}

// Update reads the order FOR UPDATE, lets fn change it, and writes it back
// when fn reports a change, all in one transaction. Concurrent updates of one
// order serialize on the row lock.
func (s *Store) Update(ctx context.Context, id string, fn func(*domain.Order) (bool, error)) error {
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		row := new(orderRow)
		err := tx.NewSelect().Model(row).Where("id = ?", id).For("UPDATE").Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return domain.ErrOrderNotFound
		}
		if err != nil {
			return fmt.Errorf("select order %s for update: %w", id, err)
		}
		o := row.toDomain()
		changed, err := fn(&o)
		if err != nil || !changed {
			return err
		}
		if _, err := tx.NewUpdate().Model(toRow(o)).
			Column("status", "invoice_id", "updated_at").WherePK().Exec(ctx); err != nil {
			return fmt.Errorf("update order %s: %w", id, err)
		}
		return nil
	})
}

// MarkInvoiced moves a pending order to invoiced: the hot path of the
// InvoiceIssued handler, one UPDATE for a whole batch of calls. It reports
// the order's creation time when it changed the order. An order that is not
// pending (not found, or invoiced already) is left to Update and the
// domain's rules, which tell a redelivery from a conflict.
func (s *Store) MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (createdAt time.Time, changed bool, err error) {
	res, err := s.mark.Do(ctx, markCall{id: id, invoiceID: invoiceID, at: at})
	if err != nil {
		return time.Time{}, false, err
	}
	if res.changed {
		return res.createdAt, true, nil
	}
	err = s.Update(ctx, id, func(o *domain.Order) (bool, error) {
		ok, err := o.MarkInvoiced(invoiceID, at)
		if ok { // not reached today (an order is never pending again), kept so the rules stay the domain's
			createdAt, changed = o.CreatedAt, true
		}
		return ok, err
	})
	return createdAt, changed, err
}

type markCall struct {
	id, invoiceID string
	at            time.Time
}

type markResult struct {
	createdAt time.Time
	changed   bool
}

// markInvoiced moves the batch's pending orders to invoiced.
const markInvoiced = `UPDATE orders AS o SET status = 'invoiced', invoice_id = t.invoice_id, updated_at = t.at
FROM unnest(?::uuid[], ?::uuid[], ?::timestamptz[]) AS t(id, invoice_id, at)
WHERE o.id = t.id AND o.status = 'pending'
RETURNING o.id, o.created_at`

// markBatch runs a batch of MarkInvoiced calls as one UPDATE. Only an
// order's first call in the batch takes part; a second one (a redelivery
// racing its original) reports no change and so goes on to Update, which
// runs after this batch committed and applies the domain's rules.
func (s *Store) markBatch(ctx context.Context, calls []groupcommit.Item[markCall]) ([]groupcommit.Result[markResult], error) {
	n := len(calls)
	ids, invoiceIDs, ats := make([]string, 0, n), make([]string, 0, n), make([]time.Time, 0, n)
	first := make(map[string]int, n) // an order's first call in the batch
	for i, c := range calls {
		if _, seen := first[c.In.id]; seen {
			continue
		}
		first[c.In.id] = i
		ids, invoiceIDs, ats = append(ids, c.In.id), append(invoiceIDs, c.In.invoiceID), append(ats, c.In.at)
	}
	var changed []struct {
		ID        string    `bun:"id"`
		CreatedAt time.Time `bun:"created_at"`
	}
	if err := s.db.NewRaw(markInvoiced, pgdialect.Array(ids), pgdialect.Array(invoiceIDs), pgdialect.Array(ats)).Scan(ctx, &changed); err != nil {
		return nil, fmt.Errorf("mark %d orders invoiced: %w", n, err)
	}
	results := make([]groupcommit.Result[markResult], n)
	for _, c := range changed {
		results[first[c.ID]].Out = markResult{createdAt: c.CreatedAt.UTC(), changed: true}
	}
	return results, nil
}
