// Package events holds the contracts between the orderflow services: the
// event structs that travel on RabbitMQ, their names and their validation.
//
// The package imports only the standard library so that any service (or a
// consumer written by another team) can depend on it without pulling in the
// messaging stack. Fields are append-only: a breaking change is a new event
// name, never a changed field.
package events

import (
	"errors"
	"fmt"
	"time"
)

// Header is embedded in every event. ID is the event's unique id (and the
// Watermill message UUID), so consumers can deduplicate; OccurredAt is when
// the fact happened in the producer.
type Header struct {
	ID         string    `json:"event_id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// EventID returns the event's id. Messaging uses it as the message UUID.
func (h Header) EventID() string { return h.ID }

// EventTime returns when the event occurred.
func (h Header) EventTime() time.Time { return h.OccurredAt }

func (h Header) validate() error {
	var errs []error
	if h.ID == "" {
		errs = append(errs, errors.New("event_id is required"))
	}
	if h.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurred_at is required"))
	}
	return errors.Join(errs...)
}

// OrderPlaced is published by orders when an order has been accepted and
// stored. Amount is in minor units of Currency (ISO 4217).
type OrderPlaced struct {
	Header
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	PlacedAt   time.Time `json:"placed_at"`
}

// Validate reports every missing or impossible field at once.
func (e *OrderPlaced) Validate() error {
	errs := []error{e.validate()}
	if e.OrderID == "" {
		errs = append(errs, errors.New("order_id is required"))
	}
	if e.CustomerID == "" {
		errs = append(errs, errors.New("customer_id is required"))
	}
	if e.Amount <= 0 {
		errs = append(errs, fmt.Errorf("amount must be positive, got %d", e.Amount))
	}
	if len(e.Currency) != 3 {
		errs = append(errs, fmt.Errorf("currency must be an ISO 4217 code, got %q", e.Currency))
	}
	if e.PlacedAt.IsZero() {
		errs = append(errs, errors.New("placed_at is required"))
	}
	return errors.Join(errs...)
}

// InvoiceIssued is published by invoices once an invoice exists for an order.
type InvoiceIssued struct {
	Header
	InvoiceID  string    `json:"invoice_id"`
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	IssuedAt   time.Time `json:"issued_at"`
}

// Validate reports every missing or impossible field at once.
func (e *InvoiceIssued) Validate() error {
	errs := []error{e.validate()}
	if e.InvoiceID == "" {
		errs = append(errs, errors.New("invoice_id is required"))
	}
	if e.OrderID == "" {
		errs = append(errs, errors.New("order_id is required"))
	}
	if e.Amount <= 0 {
		errs = append(errs, fmt.Errorf("amount must be positive, got %d", e.Amount))
	}
	if len(e.Currency) != 3 {
		errs = append(errs, fmt.Errorf("currency must be an ISO 4217 code, got %q", e.Currency))
	}
	if e.IssuedAt.IsZero() {
		errs = append(errs, errors.New("issued_at is required"))
	}
	return errors.Join(errs...)
}
