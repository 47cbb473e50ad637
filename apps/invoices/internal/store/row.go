package store

import (
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
)

// invoiceRow is a row of the invoices table.
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
