// Package domain holds the order and its rules. It does no I/O.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/currency"
)

// Limits on a new order.
const (
	MaxCustomerIDLen = 64
	MaxAmount        = 1_000_000_000_000 // minor units
)

// Status is an order's place in its life.
type Status string

// The statuses an order moves through: pending until its invoice exists.
const (
	StatusPending  Status = "pending"
	StatusInvoiced Status = "invoiced"
)

// Order is an accepted order.
type Order struct {
	ID         string
	CustomerID string
	Amount     int64 // minor units of Currency
	Currency   string
	Status     Status
	InvoiceID  string // set once invoiced
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// NewOrder is what a customer asks for. Nil fields were not given.
type NewOrder struct {
	CustomerID *string
	Amount     *int64
	Currency   *string
}

// Validate checks every field and reports all problems at once as a
// *ValidationError.
func (n NewOrder) Validate() error {
	var v ValidationError
	switch {
	case n.CustomerID == nil:
		v.add("customer_id", "is required")
	case !validCustomerID(*n.CustomerID):
		v.add("customer_id", fmt.Sprintf("must be 1-%d printable characters", MaxCustomerIDLen))
	}
	switch {
	case n.Amount == nil:
		v.add("amount", "is required")
	case *n.Amount < 1 || *n.Amount > MaxAmount:
		v.add("amount", fmt.Sprintf("must be an integer number of minor units from 1 to %d", int64(MaxAmount)))
	}
	switch {
	case n.Currency == nil:
		v.add("currency", "is required")
	case !ValidCurrency(*n.Currency):
		v.add("currency", "must be an ISO 4217 code such as EUR")
	}
	if len(v.Fields) > 0 {
		return &v
	}
	return nil
}

func validCustomerID(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > MaxCustomerIDLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return strings.TrimSpace(s) != ""
}

// ValidCurrency reports whether s is an ISO 4217 currency code, in capitals.
func ValidCurrency(s string) bool {
	if len(s) != 3 || strings.ToUpper(s) != s || s == "XXX" || s == "XTS" { // "no currency", "testing"
		return false
	}
	_, err := currency.ParseISO(s)
	return err == nil
}

// MarkInvoiced records the order's invoice. It reports whether anything
// changed: an order already invoiced by the same invoice is unchanged (a
// redelivered event), one invoiced by another invoice is an error.
func (o *Order) MarkInvoiced(invoiceID string, at time.Time) (bool, error) {
	switch {
	case o.Status == StatusInvoiced && o.InvoiceID == invoiceID:
		return false, nil
	case o.Status == StatusInvoiced:
		return false, fmt.Errorf("%w: order %s has invoice %s, not %s", ErrAlreadyInvoiced, o.ID, o.InvoiceID, invoiceID)
	}
	o.Status, o.InvoiceID, o.UpdatedAt = StatusInvoiced, invoiceID, at
	return true, nil
}

// Errors callers tell apart.
var (
	ErrOrderNotFound = errors.New("order not found")
	// ErrIdempotencyKeyReused is an Idempotency-Key sent again with another
	// request body.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
	ErrAlreadyInvoiced      = errors.New("order already invoiced")
)

// ValidationError lists the invalid fields of a request.
type ValidationError struct {
	Fields []FieldError
}

// FieldError is one invalid field.
type FieldError struct {
	Field   string
	Message string
}

func (v *ValidationError) add(field, msg string) {
	v.Fields = append(v.Fields, FieldError{Field: field, Message: msg})
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Fields))
	for i, f := range v.Fields {
		parts[i] = f.Field + " " + f.Message
	}
	return "invalid order: " + strings.Join(parts, "; ")
}
