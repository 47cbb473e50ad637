package store

import (
	"context"
	"time"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
)

// BatchCreate is one call of CreateBatch.
type BatchCreate struct {
	Order  domain.Order
	Idem   *Idempotency
	Events []any
}

// BatchCreated is one call's outcome in CreateBatch.
type BatchCreated struct {
	Order   domain.Order
	Created bool
	Err     error
}

// CreateBatch runs the calls as one group-committed transaction, the way
// Create's committer does when calls queue up, so that tests choose the
// batch.
func (s *Store) CreateBatch(ctx context.Context, calls []BatchCreate) ([]BatchCreated, error) {
	items := make([]groupcommit.Item[createCall], len(calls))
	for i, c := range calls {
		items[i] = groupcommit.Item[createCall]{Ctx: ctx, In: createCall{order: c.Order, idem: c.Idem, events: c.Events}}
	}
	res, err := s.createBatch(ctx, items)
	if err != nil {
		return nil, err
	}
	out := make([]BatchCreated, len(res))
	for i, r := range res {
		out[i] = BatchCreated{Order: r.Out.order, Created: r.Out.created, Err: r.Err}
	}
	return out, nil
}

// BatchMark is one call of MarkBatch.
type BatchMark struct {
	ID, InvoiceID string
	At            time.Time
}

// MarkBatch runs the calls as one group-committed UPDATE and reports which
// changed their order.
func (s *Store) MarkBatch(ctx context.Context, calls []BatchMark) ([]bool, error) {
	items := make([]groupcommit.Item[markCall], len(calls))
	for i, c := range calls {
		items[i] = groupcommit.Item[markCall]{Ctx: ctx, In: markCall{id: c.ID, invoiceID: c.InvoiceID, at: c.At}}
	}
	res, err := s.markBatch(ctx, items)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Out.changed
	}
	return out, nil
}
