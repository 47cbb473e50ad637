// Package store persists invoices in PostgreSQL with bun, and appends their
// events to the transactional outbox in the same transaction.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// Store keeps invoices, one per order. Issue is one transaction that inserts
// the invoice and appends its events to the outbox; GroupCommit (batch.go)
// batches it under load.
type Store struct {
	db     *bun.DB
	outbox *outbox.Outbox
}

// New returns a store on db that appends events to outbox.
func New(db *bun.DB, outbox *outbox.Outbox) *Store { return &Store{db: db, outbox: outbox} }

// Issue inserts the invoice and appends events to the outbox in one
// transaction. An order has one invoice (order_id is unique): for an order
// that has it already, a redelivered OrderPlaced, it writes nothing and
// reports false.
func (s *Store) Issue(ctx context.Context, inv domain.Invoice, events ...any) (bool, error) {
	row := toRow(inv)
	var issued bool
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewInsert().Model(&row).On("CONFLICT (order_id) DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("insert invoice for order %s: %w", inv.OrderID, err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		issued = true
		return s.outbox.Append(ctx, tx, events...)
	})
	if err != nil {
		return false, err
	}
	return issued, nil
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
