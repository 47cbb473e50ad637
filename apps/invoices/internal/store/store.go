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

	"github.com/orderflow/orderflow/apps/invoices/internal/app"
	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
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

// Store is the invoices store.
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

type invoiceRow struct {
	bun.BaseModel `bun:"table:invoices"`

	ID         string    `bun:"id,pk,type:uuid"`
	OrderID    string    `bun:"order_id,type:uuid"`
	CustomerID string    `bun:"customer_id"`
	Amount     int64     `bun:"amount"`
	Currency   string    `bun:"currency"`
	IssuedAt   time.Time `bun:"issued_at"`
}

func toRow(inv domain.Invoice) invoiceRow {
	return invoiceRow{ID: inv.ID, OrderID: inv.OrderID, CustomerID: inv.CustomerID, Amount: inv.Amount, Currency: inv.Currency, IssuedAt: inv.IssuedAt}
}

func (r *invoiceRow) toDomain() domain.Invoice {
	return domain.Invoice{ID: r.ID, OrderID: r.OrderID, CustomerID: r.CustomerID, Amount: r.Amount, Currency: r.Currency, IssuedAt: r.IssuedAt.UTC()}
}

// Issue inserts the invoice and appends events to the outbox in one
// transaction. An order has one invoice (order_id is unique): for an order
// that has it already, a redelivered OrderPlaced, it writes nothing and
// reports false.
func (s *Store) Issue(ctx context.Context, inv domain.Invoice, events ...any) (bool, error) {
	if s.batch != nil {
		return s.batch.issue(ctx, inv, events)
	}
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
