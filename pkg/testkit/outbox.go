package testkit

import (
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

// CountRows returns how many rows table has.
func CountRows(tb testing.TB, db bun.IDB, table string) int {
	tb.Helper()
	var n int
	if err := db.NewRaw("SELECT count(*) FROM "+table).Scan(tb.Context(), &n); err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}
