// Package domain holds the invoice. It does no I/O.
package domain

import (
	"errors"
	"time"
)

// Invoice bills one order. There is at most one invoice per order.
type Invoice struct {
	ID         string
	OrderID    string
	CustomerID string
	Amount     int64 // minor units of Currency
	Currency   string
	IssuedAt   time.Time
}

// ErrInvoiceNotFound is returned for an unknown invoice id.
var ErrInvoiceNotFound = errors.New("invoice not found")
