package store

import (
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
)

// orderRow is a row of the orders table.
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
