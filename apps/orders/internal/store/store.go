// Package store persists orders in PostgreSQL with bun, and appends their
// events to the transactional outbox in the same transaction.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// Store keeps orders. Each write is one transaction: Create's inserts the
// order and appends its events to the outbox, MarkInvoiced's moves it on.
// GroupCommit (batch.go) batches both under load.
type Store struct {
	db     *bun.DB
	outbox *outbox.Outbox
}

// New returns a store on db that appends events to outbox.
func New(db *bun.DB, outbox *outbox.Outbox) *Store { return &Store{db: db, outbox: outbox} }

// Create inserts the order and appends events to the outbox in one
// transaction. An idempotency key the customer has used inserts nothing: the
// unique constraint on (customer_id, idempotency_key), not a check before
// the insert, makes concurrent retries of one request create one order (the
// second insert waits for the first to commit).
func (s *Store) Create(ctx context.Context, o domain.Order, idem *app.Idempotency, events ...any) (domain.Order, bool, error) {
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
