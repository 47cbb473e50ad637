package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/events"
)

// PlaceOrder validates the order, stores it and appends OrderPlaced to the
// outbox in one transaction. With an idempotency key it returns the order of
// the key's first request instead (created is false).
func (a *App) PlaceOrder(ctx context.Context, n domain.NewOrder, idempotencyKey string) (domain.Order, bool, error) {
	if err := n.Validate(); err != nil {
		return domain.Order{}, false, err
	}
	id, err := uuid.NewV7() // sorts by creation time: the list's keyset cursor
	if err != nil {
		return domain.Order{}, false, fmt.Errorf("new order id: %w", err)
	}
	now := a.timestamp()
	o := domain.Order{
		ID: id.String(), CustomerID: *n.CustomerID, Amount: *n.Amount, Currency: *n.Currency,
		Status: domain.StatusPending, CreatedAt: now, UpdatedAt: now,
	}
	var idem *Idempotency
	if idempotencyKey != "" {
		idem = &Idempotency{Key: idempotencyKey, Hash: requestHash(n)}
	}
	placed := &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
		OrderID: o.ID, CustomerID: o.CustomerID, Amount: o.Amount, Currency: o.Currency, PlacedAt: now,
	}
	got, created, err := a.store.Create(ctx, o, idem, placed)
	if err != nil {
		return domain.Order{}, false, err
	}
	if created {
		a.metrics.OrderPlaced(ctx)
	}
	return got, created, nil
}

// requestHash identifies a request body by its meaning, so the same order
// sent again with other whitespace or key order still matches.
func requestHash(n domain.NewOrder) string {
	sum := sha256.Sum256([]byte(strconv.Quote(*n.CustomerID) + "|" + strconv.FormatInt(*n.Amount, 10) + "|" + *n.Currency))
	return hex.EncodeToString(sum[:])
}
