package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/pkg/observability"
)

// This file is group commit's write (pkg/groupcommit, the stores'
// batch.go): the same outbox rows Append writes, for a batch of writes in
// one statement. The plain path does not use it.

// Write is one write of a batch (see InsertWithEvents): the id of its row,
// and the events it appends if that row is inserted, as its context's.
type Write struct {
	ID     string
	Ctx    context.Context
	Events []any
}

// InsertWithEvents runs insert, an INSERT … RETURNING "id" of the writes'
// rows whose arguments are args ($1 to $n), and appends the events of each
// write whose row it inserted, all in one statement: one round trip and one
// commit, with no transaction block around them, where a batch would
// otherwise wait for BEGIN, two INSERTs and COMMIT one after another. It
// returns the ids inserted, and wakes the forwarder.
//
// The statement goes to db (the *sql.DB beneath a *bun.DB, so past bun's
// query hooks: it wakes the forwarder and opens its query span itself) with
// its arguments: its text is the same for every batch (insert takes arrays,
// unnest turns them into rows), so pgx prepares it once per connection and
// PostgreSQL plans it once, where bun would inline a batch's values into a
// text that is planned anew each time.
func (o *Outbox) InsertWithEvents(ctx context.Context, db *sql.DB, insert string, args []any, writes []Write) (inserted map[string]bool, err error) {
	msgs, from, err := o.envelopes(writes)
	if err != nil {
		return nil, err
	}
	owner, uuids, payloads, metadata := make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs))
	for i, m := range msgs {
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return nil, fmt.Errorf("marshal the metadata of event %s: %w", m.UUID, err)
		}
		owner[i], uuids[i], payloads[i], metadata[i] = writes[from[i]].ID, m.UUID, string(m.Payload), string(md)
	}
	n := len(args)
	// insert is the store's constant and the rest are numbers: no value is formatted in.
	query := fmt.Sprintf(insertWithEvents, insert, Table, n+1, n+2, n+3, n+4) //nolint:gosec // see above
	ctx, end := observability.DatabaseSpan(ctx, spanName(insert), query, o.otel...)
	defer func() { end(err) }()
	rows, err := db.QueryContext(ctx, query, slices.Concat(args, []any{owner, uuids, payloads, metadata})...)
	if err != nil {
		return nil, fmt.Errorf("insert %d rows with %d events: %w", len(writes), len(msgs), err)
	}
	defer rows.Close()
	inserted = make(map[string]bool, len(writes))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read the inserted ids: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert %d rows with %d events: %w", len(writes), len(msgs), err)
	}
	o.waker.wake()
	return inserted, nil
}

// spanName is "INSERT {table}" for insert, "INSERT INTO {table} …".
func spanName(insert string) string {
	if f := strings.Fields(insert); len(f) > 2 && strings.EqualFold(f[1], "INTO") {
		return "INSERT " + f[2]
	}
	return "INSERT"
}

// insertWithEvents keeps the events in their writes' order, so that the
// outbox's offsets are too.
const insertWithEvents = `WITH ins AS (%s), events AS (
	INSERT INTO %s (uuid, payload, metadata)
	SELECT e.uuid, e.payload::json, e.metadata::json
	FROM unnest($%d::text[], $%d::text[], $%d::text[], $%d::text[]) WITH ORDINALITY AS e(owner, uuid, payload, metadata, n)
	WHERE e.owner IN (SELECT id::text FROM ins)
	ORDER BY e.n
)
SELECT id::text FROM ins`
