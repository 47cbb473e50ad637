package store

import (
	"context"
	"fmt"
	"time"

	"github.com/orderflow/orderflow/apps/invoices/internal/app"
	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// GroupCommit is the invoices store under load (GROUP_COMMIT): the Issue
// calls of concurrent OrderPlaced handlers share one statement that inserts
// their invoices and their events, instead of a transaction each (see
// pkg/groupcommit; a failed batch runs each call alone). Its other methods
// are the Store's.
type GroupCommit struct {
	*Store
	issues *groupcommit.Committer[issueCall, bool]
}

// Both are the app's store: plain, and batched.
var _, _ app.Store = (*Store)(nil), (*GroupCommit)(nil)

// NewGroupCommit returns s with its Issue calls batched.
func NewGroupCommit(s *Store, cfg groupcommit.Config) *GroupCommit {
	cfg.Name = "invoices.issue"
	g := &GroupCommit{Store: s}
	g.issues = groupcommit.New(g.issueBatch, cfg)
	return g
}

type issueCall struct {
	inv    domain.Invoice
	events []any
}

// Issue is Store.Issue, batched.
func (g *GroupCommit) Issue(ctx context.Context, inv domain.Invoice, events ...any) (bool, error) {
	return g.issues.Do(ctx, issueCall{inv: inv, events: events})
}

// insertInvoices inserts a batch's invoices, one per element of its arrays.
const insertInvoices = `INSERT INTO invoices (id, order_id, customer_id, amount, currency, issued_at)
SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
ON CONFLICT (order_id) DO NOTHING
RETURNING id`

// issueBatch inserts the batch's invoices, skipping orders invoiced already
// (by an earlier delivery, or earlier in the batch), and the events of the
// inserted ones, in one statement (outbox.Outbox.InsertWithEvents).
func (g *GroupCommit) issueBatch(ctx context.Context, calls []groupcommit.Item[issueCall]) ([]groupcommit.Result[bool], error) {
	var ids, orderIDs, customerIDs, currencies []string
	var amounts []int64
	var issuedAt []time.Time
	writes := make([]outbox.Write, 0, len(calls))
	for _, c := range calls {
		inv := c.In.inv
		ids, orderIDs, customerIDs = append(ids, inv.ID), append(orderIDs, inv.OrderID), append(customerIDs, inv.CustomerID)
		amounts, currencies, issuedAt = append(amounts, inv.Amount), append(currencies, inv.Currency), append(issuedAt, inv.IssuedAt)
		writes = append(writes, outbox.Write{ID: inv.ID, Ctx: c.Ctx, Events: c.In.events})
	}
	issued, err := g.outbox.InsertWithEvents(ctx, g.db.DB, insertInvoices,
		[]any{ids, orderIDs, customerIDs, amounts, currencies, issuedAt}, writes)
	if err != nil {
		return nil, fmt.Errorf("issue %d invoices: %w", len(calls), err)
	}
	results := make([]groupcommit.Result[bool], len(calls))
	for i, c := range calls {
		results[i].Out = issued[c.In.inv.ID]
	}
	return results, nil
}
