// Package store persists invoices in PostgreSQL with bun, and appends their
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
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
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

// Store is the invoices store.
//
// Issuing invoices is group-committed (see pkg/groupcommit): the OrderPlaced
// handlings that arrive while earlier transactions are in flight share the
// next one, so that under load many invoices cost one commit.
type Store struct {
	db     *bun.DB
	outbox messaging.Outbox
	tracer trace.Tracer // spans of the statements bun does not send (nil: none)
	issue  *groupcommit.Committer[issueCall, bool]
}

// New returns a store on db that appends events to outbox. batching
// instruments its group commits (observability.Telemetry.Batching) and may
// set their size and concurrency; the store names each operation.
func New(db *bun.DB, outbox messaging.Outbox, batching groupcommit.Config) *Store {
	s := &Store{db: db, outbox: outbox, tracer: batching.Tracer}
	batching.Name = "invoices.issue"
	s.issue = groupcommit.New(s.issueBatch, batching)
	return s
}

type invoiceRow struct {
	bun.BaseModel `bun:"table:invoices"`

	ID         string    `bun:"id,pk,type:uuid"`
	OrderID    string    `bun:"order_id,type:uuid"`
	CustomerID string    `bun:"customer_id"`
	Amount     int64     `bun:"amount"`
	Currency   string    `bun:"currency"`
	IssuedAt   time.Time `bun:"issued_at"`
}

func (r *invoiceRow) toDomain() domain.Invoice {
	return domain.Invoice{ID: r.ID, OrderID: r.OrderID, CustomerID: r.CustomerID, Amount: r.Amount, Currency: r.Currency, IssuedAt: r.IssuedAt.UTC()}
}

// Issue inserts the invoice and appends the events that newEvents returns for
// it to the outbox, atomically. When the order has an invoice already (a
// redelivered OrderPlaced) it does nothing and reports false: that invoice's
// events were appended when it was inserted. newEvents may run for an
// invoice that is then not inserted (the batch is written in one statement
// with its events, built beforehand); those events are discarded.
func (s *Store) Issue(ctx context.Context, inv domain.Invoice, newEvents func(domain.Invoice) []any) (bool, error) {
	return s.issue.Do(ctx, issueCall{invoice: inv, newEvents: newEvents})
}

type issueCall struct {
	invoice   domain.Invoice
	newEvents func(domain.Invoice) []any
}

// insertInvoices inserts a batch of invoices in one statement. An invoice
// for an order that has one, or has one earlier in the batch, is skipped;
// RETURNING tells which were inserted.
const insertInvoices = `INSERT INTO invoices (id, order_id, customer_id, amount, currency, issued_at)
SELECT * FROM unnest(?::uuid[], ?::uuid[], ?::text[], ?::bigint[], ?::text[], ?::timestamptz[])
ON CONFLICT (order_id) DO NOTHING
RETURNING id`

// insertNewInvoices inserts a batch of invoices for orders that have none,
// with the outbox rows of their events prepended (messaging.OutboxRows.With):
// one statement. An order that has an invoice, or appears twice in the
// batch, fails it as a whole with a unique violation.
func insertNewInvoices(p int) string {
	return fmt.Sprintf(`INSERT INTO invoices (id, order_id, customer_id, amount, currency, issued_at)
SELECT id::uuid, order_id::uuid, customer_id, amount, currency, issued_at
FROM unnest($%d::text[], $%d::text[], $%d::text[], $%d::bigint[], $%d::text[], $%d::timestamptz[])
  AS t(id, order_id, customer_id, amount, currency, issued_at)`, p, p+1, p+2, p+3, p+4, p+5)
}

// issueBatch runs a batch of Issue calls. The usual batch, for orders that
// have no invoice yet, is one statement that inserts the invoices and their
// events (atomic without a transaction block, so one round trip and one
// commit). A redelivered OrderPlaced makes it fail and write nothing; the
// batch then runs again as a transaction that skips the orders invoiced
// already (issueBatchTx).
func (s *Store) issueBatch(ctx context.Context, calls []groupcommit.Item[issueCall]) ([]groupcommit.Result[bool], error) {
	cols := newInvoiceColumns(calls)
	rows, err := s.outbox.Rows()
	if err != nil {
		return nil, err
	}
	results := make([]groupcommit.Result[bool], len(calls))
	for i, c := range calls {
		if err := rows.Add(c.Ctx, c.In.newEvents(c.In.invoice)...); err != nil {
			return nil, err
		}
		results[i].Out = true
	}
	q, args, err := rows.With(insertNewInvoices, cols.values()...)
	if err != nil {
		return nil, err
	}
	err = database.Exec(ctx, s.db, s.tracer, database.Statement{Operation: "INSERT", Table: "invoices", Query: q, Args: args})
	if database.IsUniqueViolation(err) {
		return s.issueBatchTx(ctx, calls, cols)
	}
	if err != nil {
		return nil, fmt.Errorf("insert %d invoices: %w", len(calls), err)
	}
	if rows.Len() > 0 {
		s.outbox.Committed()
	}
	return results, nil
}

// invoiceColumns are a batch's invoices column by column: the unnest
// arguments of both inserts, in their order (values).
type invoiceColumns struct {
	ids, orders, customers, currencies []string
	amounts                            []int64
	issued                             []time.Time
}

func newInvoiceColumns(calls []groupcommit.Item[issueCall]) invoiceColumns {
	n := len(calls)
	c := invoiceColumns{
		ids: make([]string, n), orders: make([]string, n), customers: make([]string, n), currencies: make([]string, n),
		amounts: make([]int64, n), issued: make([]time.Time, n),
	}
	for i, call := range calls {
		inv := call.In.invoice
		c.ids[i], c.orders[i], c.customers[i], c.amounts[i], c.currencies[i], c.issued[i] = inv.ID, inv.OrderID, inv.CustomerID, inv.Amount, inv.Currency, inv.IssuedAt
	}
	return c
}

func (c invoiceColumns) values() []any {
	return []any{c.ids, c.orders, c.customers, c.amounts, c.currencies, c.issued}
}

// issueBatchTx runs a batch of Issue calls in one transaction: the invoices
// in one INSERT that skips orders invoiced already, their events in one
// outbox INSERT.
func (s *Store) issueBatchTx(ctx context.Context, calls []groupcommit.Item[issueCall], cols invoiceColumns) ([]groupcommit.Result[bool], error) {
	n := len(calls)
	results := make([]groupcommit.Result[bool], n)
	var appended bool
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var inserted []string
		if err := tx.NewRaw(insertInvoices, database.Arrays(cols.values()...)...).Scan(ctx, &inserted); err != nil {
			return fmt.Errorf("insert %d invoices: %w", n, err)
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
			if !isNew[c.In.invoice.ID] {
				continue // the order has its invoice, whose events were appended with it
			}
			events := c.In.newEvents(c.In.invoice)
			if err := w.Add(c.Ctx, events...); err != nil {
				return err
			}
			results[i].Out = true
			appended = appended || len(events) > 0
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

// Get returns the invoice with id, or domain.ErrInvoiceNotFound.
func (s *Store) Get(ctx context.Context, id string) (domain.Invoice, error) {
	row := new(invoiceRow)
	err := s.db.NewSelect().Model(row).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Invoice{}, domain.ErrInvoiceNotFound
	}
	if err != nil {
		return domain.Invoice{}, fmt.Errorf("select invoice %s: %w", id, err)
	}
	return row.toDomain(), nil
}

// ByOrder returns the invoices of an order: none or one.
func (s *Store) ByOrder(ctx context.Context, orderID string) ([]domain.Invoice, error) {
	var rows []invoiceRow
	if err := s.db.NewSelect().Model(&rows).Where("order_id = ?", orderID).OrderExpr("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("select invoices of order %s: %w", orderID, err)
	}
	out := make([]domain.Invoice, len(rows))
	for i := range rows {
		out[i] = rows[i].toDomain()
	}
	return out, nil
}
