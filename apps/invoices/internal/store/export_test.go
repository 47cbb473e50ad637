package store

import (
	"context"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
)

// IssueBatch runs Issue for each invoice as one group-committed
// transaction, the way Issue's committer does when calls queue up, so that
// tests choose the batch.
func (s *Store) IssueBatch(ctx context.Context, invs []domain.Invoice, newEvents func(domain.Invoice) []any) ([]bool, error) {
	items := make([]groupcommit.Item[issueCall], len(invs))
	for i, inv := range invs {
		items[i] = groupcommit.Item[issueCall]{Ctx: ctx, In: issueCall{invoice: inv, newEvents: newEvents}}
	}
	res, err := s.issueBatch(ctx, items)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Out
	}
	return out, nil
}
