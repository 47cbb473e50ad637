package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/apps/orders/internal/app"
	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/groupcommit"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// GroupCommit is the orders store under load (GROUP_COMMIT): the Create
// calls that arrive while a write is in flight share the next one, a single
// statement that inserts all their orders and their events
// (outbox.Outbox.InsertWithEvents); the status updates that arrive together
// are one UPDATE. Under load one statement and one commit then carry many
// orders instead of four statements and a commit each; a lone call runs at
// once. Each call keeps its own outcome (created, replayed, refused); a
// batch that fails as a whole runs each call again alone (pkg/groupcommit).
// Its other methods are the Store's.
type GroupCommit struct {
	*Store
	creates *groupcommit.Committer[createCall, createResult]
	marks   *groupcommit.Committer[markCall, markResult]
}

// Both are the app's store: plain, and batched.
var _, _ app.Store = (*Store)(nil), (*GroupCommit)(nil)

// NewGroupCommit returns s with its Create and MarkInvoiced calls batched.
func NewGroupCommit(s *Store, cfg groupcommit.Config) *GroupCommit {
	g := &GroupCommit{Store: s}
	create, mark := cfg, cfg
	create.Name, mark.Name = "orders.create", "orders.mark_invoiced"
	g.creates = groupcommit.New(g.createBatch, create)
	g.marks = groupcommit.New(g.markBatch, mark)
	return g
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

// Create is Store.Create, batched.
func (g *GroupCommit) Create(ctx context.Context, o domain.Order, idem *app.Idempotency, events ...any) (domain.Order, bool, error) {
	res, err := g.creates.Do(ctx, createCall{row: toRow(o, idem), idem: idem, events: events})
	return res.order, res.created, err
}

// insertOrders inserts a batch's orders, one per element of its arrays,
// skipping the idempotency keys their customers have used (conflictOnKey).
const insertOrders = `INSERT INTO orders (id, customer_id, amount, currency, status, invoice_id, idempotency_key, request_hash, created_at, updated_at)
SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]::uuid[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[])
ON ` + conflictOnKey + `
RETURNING id`

// createBatch inserts the batch's orders, skipping idempotency keys their
// customers have used (and keys a customer repeats in the batch), with the
// events of those inserted, then answers each call: its order inserted, or
// the key's first order (replay).
func (g *GroupCommit) createBatch(ctx context.Context, calls []groupcommit.Item[createCall]) ([]groupcommit.Result[createResult], error) {
	var ids, customerIDs, currencies, statuses []string
	var invoiceIDs, keys, hashes []*string
	var amounts []int64
	var createdAt, updatedAt []time.Time
	writes := make([]outbox.Write, 0, len(calls))
	for _, c := range calls {
		r := c.In.row
		ids, customerIDs, currencies, statuses = append(ids, r.ID), append(customerIDs, r.CustomerID), append(currencies, r.Currency), append(statuses, r.Status)
		invoiceIDs, keys, hashes = append(invoiceIDs, r.InvoiceID), append(keys, r.IdempotencyKey), append(hashes, r.RequestHash)
		amounts, createdAt, updatedAt = append(amounts, r.Amount), append(createdAt, r.CreatedAt), append(updatedAt, r.UpdatedAt)
		writes = append(writes, outbox.Write{ID: r.ID, Ctx: c.Ctx, Events: c.In.events})
	}
	isNew, err := g.outbox.InsertWithEvents(ctx, g.db.DB, insertOrders,
		[]any{ids, customerIDs, amounts, currencies, statuses, invoiceIDs, keys, hashes, createdAt, updatedAt}, writes)
	if err != nil {
		return nil, fmt.Errorf("insert %d orders: %w", len(calls), err)
	}
	results := make([]groupcommit.Result[createResult], len(calls))
	for i, c := range calls {
		if isNew[c.In.row.ID] {
			results[i].Out = createResult{order: c.In.row.toDomain(), created: true}
			continue
		}
		if c.In.idem == nil {
			return nil, fmt.Errorf("insert order %s: no row inserted", c.In.row.ID)
		}
		// The key's first order committed before this statement began.
		order, err := replay(ctx, g.db, c.In.row.CustomerID, c.In.idem)
		results[i] = groupcommit.Result[createResult]{Out: createResult{order: order}, Err: err}
	}
	return results, nil
}

type markCall struct {
	id, invoiceID string
	at            time.Time
}

type markResult struct {
	placedAt time.Time
	changed  bool
}

// MarkInvoiced is Store.MarkInvoiced, batched.
func (g *GroupCommit) MarkInvoiced(ctx context.Context, id, invoiceID string, at time.Time) (time.Time, bool, error) {
	res, err := g.marks.Do(ctx, markCall{id: id, invoiceID: invoiceID, at: at})
	if err != nil || res.changed {
		return res.placedAt, res.changed, err
	}
	return g.markNotPending(ctx, id, invoiceID, at)
}

// markInvoiced moves a batch's pending orders to invoiced. It is sent with
// its arguments, as insertOrders is, but planned for each batch, because
// its best plan depends on the batch's size against the table's. A plan
// cached while the table was small reads the whole table to join it, and
// PostgreSQL keeps that plan until the table is next analysed: on a fresh
// database under load, every batch would read every order.
const markInvoiced = `UPDATE orders AS o SET status = 'invoiced', invoice_id = t.invoice_id, updated_at = t.at
FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::timestamptz[]) AS t(id, invoice_id, at)
WHERE o.id = t.id AND o.status = 'pending'
RETURNING o.id, o.created_at`

// markBatch moves the batch's pending orders to invoiced in one statement.
// Only an order's first call takes part; a second one (a redelivery racing
// its original) reports no change and goes to the domain's rule once this
// batch has committed, as does a call for an order that is not pending.
func (g *GroupCommit) markBatch(ctx context.Context, calls []groupcommit.Item[markCall]) ([]groupcommit.Result[markResult], error) {
	first := make(map[string]int, len(calls))
	var ids, invoiceIDs []string
	var ats []time.Time
	for i, c := range calls {
		if _, seen := first[c.In.id]; !seen {
			first[c.In.id] = i
			ids, invoiceIDs, ats = append(ids, c.In.id), append(invoiceIDs, c.In.invoiceID), append(ats, c.In.at)
		}
	}
	var changed []struct {
		ID        string    `bun:"id"`
		CreatedAt time.Time `bun:"created_at"`
	}
	// The unnamed statement, described once per connection: PostgreSQL
	// plans it with the batch's arguments each time (see markInvoiced).
	rows, err := g.db.DB.QueryContext(ctx, markInvoiced, pgx.QueryExecModeCacheDescribe, ids, invoiceIDs, ats)
	if err == nil {
		err = g.db.ScanRows(ctx, rows, &changed)
	}
	if err != nil {
		return nil, fmt.Errorf("mark %d orders invoiced: %w", len(ids), err)
	}
	results := make([]groupcommit.Result[markResult], len(calls))
	for _, c := range changed {
		results[first[c.ID]].Out = markResult{placedAt: c.CreatedAt.UTC(), changed: true}
	}
	return results, nil
}
