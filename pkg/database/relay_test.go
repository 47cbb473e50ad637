package database_test

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestOpenRelay_commits_without_waiting_for_the_flush(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewDatabase(t)
	relay, err := database.OpenRelay(t.Context(), url, 2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	var setting string
	require.NoError(t, relay.QueryRowContext(t.Context(), "SHOW synchronous_commit").Scan(&setting))
	assert.Equal(t, "off", setting)
	require.NoError(t, relay.QueryRowContext(t.Context(), "SHOW enable_seqscan").Scan(&setting))
	assert.Equal(t, "off", setting)

	db, err := database.Open(t.Context(), database.Config{URL: url, Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.QueryRowContext(t.Context(), "SHOW synchronous_commit").Scan(&setting))
	assert.Equal(t, "on", setting, "the services' own transactions stay durable")

	kv, err := database.OpenRelay(t.Context(), "host=127.0.0.1 user=postgres dbname=postgres", 2)
	require.NoError(t, err, "a key=value DSN works too")
	t.Cleanup(func() { _ = kv.Close() })
	require.NoError(t, kv.QueryRowContext(t.Context(), "SHOW synchronous_commit").Scan(&setting))
	assert.Equal(t, "off", setting)
}

// A forwarder's two statements on the outbox after a vacuum that left it
// small, as autovacuum does after a quiet spell: on the relay both go
// through the primary key; on an ordinary pool both plans scan the whole
// table, which is what the relay's setting avoids (see OpenRelay).
func TestOpenRelay_finds_outbox_rows_through_the_primary_key(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewDatabase(t)
	relay, err := database.OpenRelay(t.Context(), url, 2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	plain, err := database.Open(t.Context(), database.Config{URL: url, Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	for _, q := range []string{
		messaging.OutboxTableDDL,
		`INSERT INTO ` + messaging.OutboxTable + ` (uuid, payload, metadata) SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, 3)`,
		`VACUUM ` + messaging.OutboxTable,
	} {
		_, err = plain.ExecContext(t.Context(), q)
		require.NoError(t, err)
	}

	read, del := forwarderPlans(t, relay)
	assert.Contains(t, read, "Index Scan using watermill_outbox_pkey")
	assert.Contains(t, del, "Index Scan using watermill_outbox_pkey")

	read, del = forwarderPlans(t, plain.DB)
	assert.Contains(t, read, "Seq Scan on watermill_outbox")
	assert.Contains(t, del, "Seq Scan on watermill_outbox")
}

// forwarderPlans returns the plans one connection of db uses for a
// forwarder's read (watermill-sql's queue schema SELECT, with the SKIP
// LOCKED messaging adds) and for its DELETE once the prepared statement has
// run often enough for PostgreSQL to settle on a generic plan.
func forwarderPlans(t *testing.T, db *sql.DB) (read, del string) {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	read = explain(t, conn, `EXPLAIN SELECT "offset", uuid, payload, metadata FROM `+messaging.OutboxTable+
		` WHERE acked = false ORDER BY "offset" ASC LIMIT 16 FOR UPDATE SKIP LOCKED`)

	_, err = conn.ExecContext(ctx, `PREPARE outbox_delete(bigint[]) AS DELETE FROM `+messaging.OutboxTable+` WHERE "offset" = ANY($1)`)
	require.NoError(t, err)
	batch := `'{101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116}'` // no such rows: the table stays as it is
	for range 8 {
		_, err = conn.ExecContext(ctx, `EXECUTE outbox_delete(`+batch+`)`)
		require.NoError(t, err)
	}
	del = explain(t, conn, `EXPLAIN EXECUTE outbox_delete(`+batch+`)`)
	var generic int
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT generic_plans FROM pg_prepared_statements WHERE name = 'outbox_delete'`).Scan(&generic))
	require.Positive(t, generic, "the DELETE's plan is the generic one")
	_, err = conn.ExecContext(ctx, `DEALLOCATE outbox_delete`)
	require.NoError(t, err)
	return read, del
}

func explain(t *testing.T, conn *sql.Conn, query string) string {
	t.Helper()
	rows, err := conn.QueryContext(t.Context(), query)
	require.NoError(t, err)
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan.WriteString(line + "\n")
	}
	require.NoError(t, rows.Err())
	return plan.String()
}
