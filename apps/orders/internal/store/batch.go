package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// batcher is group commit for the orders store (GROUP_COMMIT): the Create
// calls that arrive while a transaction is in flight share the next one,
// which inserts all their orders in one statement and all their events in
// another. Under load a commit and a handful of statements then carry many
// orders instead of four statements and a commit each; a lone call runs at
// once. Each call keeps its own outcome (created, replayed, refused); a
// batch that fails as a whole runs each call again alone (pkg/groupcommit).
type batcher struct {
	s      *Store
	creates *groupcommit.Committer[createCall, createResult]
}

func newBatcher(s *Store, cfg groupcommit.Config) *batcher {
	cfg.Name = "orders.create"
	b := &batcher{s: s}
	b.creates = groupcommit.New(b.createBatch, cfg)
	return b
}

type createCall struct {
	row    *orderRow
	idem   *app.Idempotency
	events []any
}

type createResult struct {
	order   domain.Order
	created bool
}

func (b *batcher) create(ctx context.Context, o domain.Order, idem *app.Idempotency, events []any) (domain.Order, bool, error) {
	res, err := b.creates.Do(ctx, createCall{row: toRow(o, idem), idem: idem, events: events})
	return res.order, res.created, err
}

// createBatch inserts the batch's orders in one INSERT that skips taken
// idempotency keys (and keys repeated in the batch), then answers each call:
// its order inserted (its events go to the outbox with the others'), or the
// key's first order (replay).
func (b *batcher) createBatch(ctx context.Context, calls []groupcommit.Item[createCall]) ([]groupcommit.Result[createResult], error) {
	rows := make([]*orderRow, len(calls))
	for i, c := range calls {
		rows[i] = c.In.row
	}
	results := make([]groupcommit.Result[createResult], len(calls))
	err := b.s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var inserted []string
		err := tx.NewInsert().Model(&rows).On("CONFLICT (idempotency_key) DO NOTHING").Returning("id").Scan(ctx, &inserted)
		if err != nil {
			return fmt.Errorf("insert %d orders: %w", len(rows), err)
		}
		isNew := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			isNew[id] = true
		}
		pending := make([]messaging.Pending, 0, len(calls))
		for i, c := range calls {
			if isNew[c.In.row.ID] {
				results[i].Out = createResult{order: c.In.row.toDomain(), created: true}
				pending = append(pending, messaging.Pending{Ctx: c.Ctx, Events: c.In.events})
				continue
			}
			if c.In.idem == nil {
				return fmt.Errorf("insert order %s: no row inserted", c.In.row.ID)
			}
			order, err := replay(ctx, tx, c.In.idem)
			results[i] = groupcommit.Result[createResult]{Out: createResult{order: order}, Err: err}
		}
		return b.s.outbox.AppendAll(tx, pending...)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}
