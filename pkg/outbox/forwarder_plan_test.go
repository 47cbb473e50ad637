package outbox_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the control's driver: pgx's default, cached prepared statements
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// A forwarder's read and DELETE run many times while the outbox is small,
// as after a vacuum in a quiet spell; then deleted rows pile up. On the
// service's pool (pkg/database: every statement planned with its own
// values) both go on finding their rows through the primary key. The
// control, pgx's default of cached prepared statements, keeps the small
// table's plan and reads the whole table each time.
func TestForwarder_statements_find_outbox_rows_by_key_once_the_outbox_has_grown(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	ctx := t.Context()
	url := testkit.NewDatabase(t)
	db, err := database.Open(ctx, database.Config{URL: url, Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	control, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = control.Close() })
	for _, q := range []string{
		outbox.TableDDL,
		`ALTER TABLE ` + outbox.Table + ` SET (autovacuum_enabled = false)`, // the table's statistics stay those of the vacuum below
		`INSERT INTO ` + outbox.Table + ` (uuid, payload, metadata) SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, 3)`,
		`VACUUM ` + outbox.Table,
	} {
		_, err = db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	read, del, err := outbox.ForwarderStatements(16)
	require.NoError(t, err)
	ours, err := db.DB.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ours.Close() })
	theirs, err := control.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = theirs.Close() })

	for range 8 { // past the five runs after which PostgreSQL may keep a generic plan
		forward(t, ours, read, del)
		forward(t, theirs, read, del)
	}
	for _, q := range []string{
		`INSERT INTO ` + outbox.Table + ` (uuid, payload, metadata) SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, 20000)`,
		`DELETE FROM ` + outbox.Table + ` WHERE "offset" <= 19990`,
	} {
		_, err = db.ExecContext(ctx, q)
		require.NoError(t, err)
	}

	seq, idx := scans(t, ours, func() { forward(t, ours, read, del) })
	assert.Zero(t, seq, "the service's pool read the whole outbox")
	assert.GreaterOrEqual(t, idx, int64(2), "the read and the DELETE went through the primary key")

	seq, _ = scans(t, theirs, func() { forward(t, theirs, read, del) })
	assert.Positive(t, seq, "the control: a prepared statement kept the small table's plan")
}

// forward runs a forwarder's read and DELETE on conn, as watermill-sql does:
// the read in a transaction, the DELETE with an array of offsets (none of
// them live, so that the table stays as it is).
func forward(t *testing.T, conn *sql.Conn, read, del string) {
	t.Helper()
	ctx := t.Context()
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, read)
	require.NoError(t, err)
	for rows.Next() { //nolint:revive // the rows are read, not used
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	_, err = tx.ExecContext(ctx, del, "{-1,-2,-3}") // what watermill-sql passes: pq.Array's text
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
}

// scans runs fn and returns how many whole-table and index scans of the
// outbox conn's backend made meanwhile.
func scans(t *testing.T, conn *sql.Conn, fn func()) (seq, idx int64) {
	t.Helper()
	read := func(ctx context.Context) (seq, idx int64) {
		// This backend's statistics reach the view once its statement ends.
		_, err := conn.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		require.NoError(t, conn.QueryRowContext(ctx,
			`SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'watermill_outbox'`).Scan(&seq, &idx))
		return seq, idx
	}
	seq0, idx0 := read(t.Context())
	fn()
	seq1, idx1 := read(t.Context())
	return seq1 - seq0, idx1 - idx0
}
