package store

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// batcher is group commit for the invoices store (GROUP_COMMIT): the Issue
// calls of concurrent OrderPlaced handlers share one transaction, one INSERT
// for their invoices and one for their events, instead of a transaction
// each (see pkg/groupcommit; a failed batch runs each call alone).
type batcher struct {
	s      *Store
	issues *groupcommit.Committer[issueCall, bool]
}

func newBatcher(s *Store, cfg groupcommit.Config) *batcher {
	cfg.Name = "invoices.issue"
	b := &batcher{s: s}
	b.issues = groupcommit.New(b.issueBatch, cfg)
	return b
}

type issueCall struct {
	row    invoiceRow
	events []any
}

func (b *batcher) issue(ctx context.Context, inv domain.Invoice, events []any) (bool, error) {
	return b.issues.Do(ctx, issueCall{row: toRow(inv), events: events})
}

// issueBatch inserts the batch's invoices in one INSERT that skips orders
// invoiced already (by an earlier delivery, or earlier in the batch); the
// events of the inserted ones go to the outbox together.
func (b *batcher) issueBatch(ctx context.Context, calls []groupcommit.Item[issueCall]) ([]groupcommit.Result[bool], error) {
	rows := make([]invoiceRow, len(calls))
	for i, c := range calls {
		rows[i] = c.In.row
	}
	results := make([]groupcommit.Result[bool], len(calls))
	err := b.s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var inserted []string
		if err := tx.NewInsert().Model(&rows).On("CONFLICT (order_id) DO NOTHING").Returning("id").Scan(ctx, &inserted); err != nil {
			return fmt.Errorf("insert %d invoices: %w", len(rows), err)
		}
		issued := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			issued[id] = true
		}
		var pending []messaging.Pending
		for i, c := range calls {
			if results[i].Out = issued[c.In.row.ID]; results[i].Out {
				pending = append(pending, messaging.Pending{Ctx: c.Ctx, Events: c.In.events})
			}
		}
		return b.s.outbox.AppendAll(tx, pending...)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}
