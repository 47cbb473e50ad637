package testkit

import (
	"context"
	"database/sql"
	"testing"

	"github.com/uptrace/bun"
)

// OutboxRow is an outbox row as the stores' tests see it: the forwarder
// envelope's destination topic and the event id it carries.
type OutboxRow struct {
	Topic   string
	EventID string
}

// OutboxRows returns the rows of a service's outbox ("watermill_outbox"), in
// offset order.
func OutboxRows(tb testing.TB, db bun.IDB) []OutboxRow {
	tb.Helper()
	var rows []OutboxRow
	if err := db.NewRaw(`SELECT payload->>'destination_topic' AS topic, payload->>'uuid' AS event_id
		FROM "watermill_outbox" ORDER BY "offset"`).Scan(tb.Context(), &rows); err != nil {
		tb.Fatalf("read the outbox: %v", err)
	}
	return rows
}

// RowQuerier is what CountRows reads through: a *bun.DB, a *sql.DB or a
// transaction of either.
type RowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CountRows returns how many rows table has.
func CountRows(tb testing.TB, db RowQuerier, table string) int {
	tb.Helper()
	var n int
	if err := db.QueryRowContext(tb.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}
