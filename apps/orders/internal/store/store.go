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

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the store's SQL migrations, the outbox table's among
// them.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists at compile time
	}
	return database.Union(sub, outbox.Migrations())
}

// Store is the orders store.
type Store struct {
	db     *bun.DB
	outbox *outbox.Outbox
	batch  *batcher // group commit (batch.go); nil: one transaction per write
}

var _ app.Store = (*Store)(nil)

// New returns a store on db that appends events to outbox. With gc, writes
// that arrive together share a transaction (batch.go).
func New(db *bun.DB, outbox *outbox.Outbox, gc *groupcommit.Config) *Store {
	s := &Store{db: db, outbox: outbox}
	if gc != nil {
		s.batch = newBatcher(s, *gc)
	}
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

func toRow(o domain.Order, idem *app.Idempotency) *orderRow {
	r := &orderRow{
		ID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency,
		Status: string(o.Status), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	if o.InvoiceID != "" {
		r.InvoiceID = &o.InvoiceID
	}
	if idem != nil {
		r.IdempotencyKey, r.RequestHash = &idem.Key, &idem.Hash
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

// Create inserts the order and appends events to the outbox in one
// transaction. An idempotency key the customer has used inserts nothing: the
// unique constraint on (customer_id, idempotency_key), not a check before
// the insert, makes concurrent retries of one request create one order (the
// second insert waits for the first to commit).
func (s *Store) Create(ctx context.Context, o domain.Order, idem *app.Idempotency, events ...any) (domain.Order, bool, error) {
	if s.batch != nil {
		return s.batch.create(ctx, o, idem, events)
	}
	row := toRow(o, idem)
	got, created := o, true
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(row).On(conflictOnKey).Exec(ctx)
		if err != nil {
			return fmt.Errorf("insert order %s: %w", o.ID, err)
		}
		n, err := res.RowsAffected()
		switch {
		case err != nil:
			return fmt.Errorf("insert order %s: %w", o.ID, err)
		case n == 1:
			return s.outbox.Append(ctx, tx, events...)
		case idem == nil:
			return fmt.Errorf("insert order %s: no row inserted", o.ID)
		}
		created = false
		got, err = replay(ctx, tx, o.CustomerID, idem)
		return err
	})
	if err != nil {
		return domain.Order{}, false, err
	}
	return got, created, nil
}

// conflictOnKey skips an order whose customer has used its idempotency key
// (migration 20251201000001: keys are scoped per customer).
const conflictOnKey = "CONFLICT (customer_id, idempotency_key) DO NOTHING"

// replay returns the order of the customer's request that took idem's key,
// if it had the same body.
func replay(ctx context.Context, db bun.IDB, customerID string, idem *app.Idempotency) (domain.Order, error) {
	row := new(orderRow)
	err := db.NewSelect().Model(row).Where("customer_id = ?", customerID).Where("idempotency_key = ?", idem.Key).Scan(ctx)
	if err != nil {
		return domain.Order{}, fmt.Errorf("select order by idempotency key: %w", err)
	}
	if row.RequestHash == nil || *row.RequestHash != idem.Hash {
		return domain.Order{}, domain.ErrIdempotencyKeyReused
	}
	return row.toDomain(), nil
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

// List returns up to q.Limit orders older than q.After, newest first.
func (s *Store) List(ctx context.Context, q app.ListQuery) ([]domain.Order, error) {
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

// Update reads the order FOR UPDATE, lets change modify it, and writes it
// back when change reports a change, all in one transaction. Concurrent
// updates of one order serialize on the row lock.
func (s *Store) Update(ctx context.Context, id string, change func(*domain.Order) (bool, error)) error {
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
		changed, err := change(&o)
		if err != nil || !changed {
			return err
		}
		if _, err := tx.NewUpdate().Model(toRow(o, nil)).Column("status", "invoice_id", "updated_at").WherePK().Exec(ctx); err != nil {
			return fmt.Errorf("update order %s: %w", id, err)
		}
		return nil
	})
}

// MarkInvoiced moves a pending order to invoiced in one statement, the usual
// case, and reports its creation time. An order that is not pending (not
// found, or invoiced already) goes to Update and the domain's rule, which
// tells a redelivery from a conflict.
func (s *Store) MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (placedAt time.Time, changed bool, err error) {
	if s.batch != nil {
		return s.batch.markInvoiced(ctx, id, invoiceID, at)
	}
	err = s.db.NewUpdate().Model((*orderRow)(nil)).
		Set("status = ?", domain.StatusInvoiced).Set("invoice_id = ?", invoiceID).Set("updated_at = ?", at).
		Where("id = ?", id).Where("status = ?", domain.StatusPending).
		Returning("created_at").Scan(ctx, &placedAt)
	if err == nil {
		return placedAt.UTC(), true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, fmt.Errorf("mark order %s invoiced: %w", id, err)
	}
	return s.markNotPending(ctx, id, invoiceID, at)
}

// markNotPending applies the domain's rule to an order that was not pending.
func (s *Store) markNotPending(ctx context.Context, id, invoiceID string, at time.Time) (placedAt time.Time, changed bool, err error) {
	err = s.Update(ctx, id, func(o *domain.Order) (bool, error) {
		placedAt = o.CreatedAt
		changed, err = o.MarkInvoiced(invoiceID, at)
		return changed, err
	})
	return placedAt, changed, err
}
