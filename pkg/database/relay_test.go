package database_test

import (
	"database/sql"
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
	require.NoError(t, relay.QueryRowContext(t.Context(), "SHOW plan_cache_mode").Scan(&setting))
	assert.Equal(t, "force_custom_plan", setting)

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

// The forwarder's DELETE (watermill-sql's, as the queue offsets adapter
// builds it) is prepared once per connection by pgx and run with each
// batch's offsets. On the relay PostgreSQL plans it for those offsets every
// time; on an ordinary pool it settles on a generic plan after five runs,
// the plan OpenRelay's comment explains.
func TestOpenRelay_plans_each_outbox_delete_for_its_offsets(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewDatabase(t)
	relay, err := database.OpenRelay(t.Context(), url, 2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	plain, err := database.Open(t.Context(), database.Config{URL: url, Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	_, err = plain.ExecContext(t.Context(), messaging.OutboxTableDDL)
	require.NoError(t, err)

	generic, custom := runOutboxDeletes(t, relay)
	assert.Equal(t, 0, generic, "the relay never uses a generic plan")
	assert.Equal(t, 8, custom)

	generic, _ = runOutboxDeletes(t, plain.DB)
	assert.Positive(t, generic, "an ordinary pool does, so the relay's setting is what makes the difference")
}

// runOutboxDeletes appends 16 rows to the outbox and deletes them in one
// statement, as a forwarder's batch does, eight times on one connection of
// db; then it reads how that connection planned the prepared DELETE.
func runOutboxDeletes(t *testing.T, db *sql.DB) (generic, custom int) {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	deleteQuery := `DELETE FROM ` + messaging.OutboxTable + ` WHERE "offset" = ANY($1)`
	for range 8 {
		rows, err := conn.QueryContext(ctx, `INSERT INTO `+messaging.OutboxTable+` (uuid, payload, metadata)
			SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, 16) RETURNING "offset"`)
		require.NoError(t, err)
		var batch []int64
		for rows.Next() {
			var o int64
			require.NoError(t, rows.Scan(&o))
			batch = append(batch, o)
		}
		require.NoError(t, rows.Err())
		res, err := conn.ExecContext(ctx, deleteQuery, batch)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		require.EqualValues(t, 16, n)
	}
	require.NoError(t, conn.QueryRowContext(ctx,
		`SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`, deleteQuery,
	).Scan(&generic, &custom))
	return generic, custom
}
