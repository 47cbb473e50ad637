package outbox_test

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// A forwarder's two statements on an outbox that a vacuum left small, as
// autovacuum does after a quiet spell: on the forwarders' pool
// (database.OpenRelay) both go through the primary key; on an ordinary pool
// both plans scan the whole table, and a connection would keep them while
// deleted rows pile up (see OpenRelay).
func TestForwarder_finds_outbox_rows_through_the_primary_key(t *testing.T) {
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
		outbox.TableDDL,
		`INSERT INTO ` + outbox.Table + ` (uuid, payload, metadata) SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, 3)`,
		`VACUUM ` + outbox.Table,
	} {
		_, err = plain.ExecContext(t.Context(), q)
		require.NoError(t, err)
	}
	read, del, err := outbox.ForwarderStatements(16)
	require.NoError(t, err)

	readPlan, delPlan := forwarderPlans(t, relay, read, del)
	assert.Contains(t, readPlan, "Index Scan using watermill_outbox_pkey")
	assert.Contains(t, delPlan, "Index Scan using watermill_outbox_pkey")

	readPlan, delPlan = forwarderPlans(t, plain.DB, read, del)
	assert.Contains(t, readPlan, "Seq Scan on watermill_outbox", "the control: without the relay's setting the plans scan")
	assert.Contains(t, delPlan, "Seq Scan on watermill_outbox")
}

// forwarderPlans returns the plans one connection of db uses for the
// forwarder's read and for its DELETE once that prepared statement has run
// often enough for PostgreSQL to settle on a generic plan, as the forwarder's
// (prepared by pgx) does.
func forwarderPlans(t *testing.T, db *sql.DB, read, del string) (readPlan, delPlan string) {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	readPlan = explain(t, conn, "EXPLAIN "+read)

	_, err = conn.ExecContext(ctx, `PREPARE outbox_delete(bigint[]) AS `+del)
	require.NoError(t, err)
	batch := `'{101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116}'` // no such rows: the table stays as it is
	for range 8 {
		_, err = conn.ExecContext(ctx, `EXECUTE outbox_delete(`+batch+`)`)
		require.NoError(t, err)
	}
	delPlan = explain(t, conn, `EXPLAIN EXECUTE outbox_delete(`+batch+`)`)
	var generic int
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT generic_plans FROM pg_prepared_statements WHERE name = 'outbox_delete'`).Scan(&generic))
	require.Positive(t, generic, "the DELETE's plan is the generic one")
	_, err = conn.ExecContext(ctx, `DEALLOCATE outbox_delete`)
	require.NoError(t, err)
	return readPlan, delPlan
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
