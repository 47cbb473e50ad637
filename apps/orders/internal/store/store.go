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

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
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
type Store struct {
	db     *bun.DB
	outbox messaging.Outbox
}

// New returns a store on db that appends events to outbox.
func New(db *bun.DB, outbox messaging.Outbox) *Store {
	return &Store{db: db, outbox: outbox}
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
	row := toRow(o)
	if idem != nil {
		row.IdempotencyKey, row.RequestHash = &idem.Key, &idem.Hash
	}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(row).On("CONFLICT (idempotency_key) DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("insert order %s: %w", o.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 && idem != nil {
			// The key's first request committed; a concurrent one waited
			// on the unique index and lands here too.
			existing := new(orderRow)
			if err := tx.NewSelect().Model(existing).Where("idempotency_key = ?", idem.Key).Scan(ctx); err != nil {
				return fmt.Errorf("select order by idempotency key: %w", err)
			}
			if existing.RequestHash == nil || *existing.RequestHash != idem.Hash {
				return domain.ErrIdempotencyKeyReused
			}
			got = existing.toDomain()
			return nil
		}
		if err := s.outbox.Publish(ctx, tx.Tx, events...); err != nil {
			return err
		}
		got, created = o, true
		return nil
	})
	if err != nil {
		return domain.Order{}, false, err
	}
	if created {
		s.outbox.Committed()
	}
	return got, created, nil
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

// MarkInvoiced moves a pending order to invoiced in one statement, the hot
// path of the InvoiceIssued handler (one round trip instead of Update's
// four). It reports the order's creation time when it changed the order.
// An order that is not pending (not found, or invoiced already) is left to
// Update and the domain's rules, which tell a redelivery from a conflict.
func (s *Store) MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (createdAt time.Time, changed bool, err error) {
	err = s.db.NewUpdate().Model((*orderRow)(nil)).
		Set("status = ?", string(domain.StatusInvoiced)).Set("invoice_id = ?", invoiceID).Set("updated_at = ?", at).
		Where("id = ?", id).Where("status = ?", string(domain.StatusPending)).
		Returning("created_at").Scan(ctx, &createdAt)
	if err == nil {
		return createdAt.UTC(), true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, fmt.Errorf("mark order %s invoiced: %w", id, err)
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
