package messaging_test

import (
	"context"
	"database/sql"
	"net/url"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// pipelineEnv is a fresh database with a table of three rows, reached
// directly and through a proxy that counts round trips.
type pipelineEnv struct {
	direct  *sql.DB
	proxied *sql.DB
	proxy   *testkit.Proxy
}

func newPipelineEnv(t *testing.T) pipelineEnv {
	t.Helper()
	dsn := testkit.NewDatabase(t)
	direct, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	_, err = direct.ExecContext(t.Context(), `CREATE TABLE rows (id bigint PRIMARY KEY, payload bytea, note text);
		INSERT INTO rows VALUES (1, 'one', NULL), (2, 'two', 'b'), (3, 'three', 'c')`)
	require.NoError(t, err)

	u, err := url.Parse(dsn)
	require.NoError(t, err)
	proxy := testkit.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	// The forwarders' own pool, with one connection: every transaction
	// below reuses it.
	proxied, err := database.OpenRelay(t.Context(), u.String(), 1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxied.Close() })
	return pipelineEnv{direct: direct, proxied: proxied, proxy: proxy}
}

func (e pipelineEnv) ids(t *testing.T) []int64 {
	t.Helper()
	rows, err := e.direct.QueryContext(t.Context(), "SELECT id FROM rows ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

type lockedRow struct {
	id      int64
	payload []byte
	note    *string
}

const lockRows = "SELECT id, payload, note FROM rows ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"

func lock(t *testing.T, ctx context.Context, tx wsql.Tx, limit int) []lockedRow {
	t.Helper()
	rows, err := tx.QueryContext(ctx, lockRows, limit)
	require.NoError(t, err)
	var got []lockedRow
	for rows.Next() {
		var r lockedRow
		require.NoError(t, rows.Scan(&r.id, &r.payload, &r.note))
		got = append(got, r)
	}
	require.NoError(t, rows.Close())
	return got
}

func begin(t *testing.T, e pipelineEnv) wsql.Tx {
	t.Helper()
	tx, err := messaging.PipelinedBeginner(e.proxied).BeginTx(t.Context(), &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	require.NoError(t, err)
	return tx
}

func TestPipelinedTx_a_forwarded_batch_is_two_round_trips(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newPipelineEnv(t)

	// The connection's first use of each statement prepares it (pgx's
	// statement cache), a round trip more; a forwarder's connection is
	// long-lived, so what counts is every batch after that.
	tx := begin(t, e)
	lock(t, t.Context(), tx, 2)
	_, err := tx.ExecContext(t.Context(), "DELETE FROM rows WHERE id = ANY($1)", []int64{})
	require.NoError(t, err)
	require.NoError(t, tx.Commit())

	tx = begin(t, e)
	before := e.proxy.Sends() // BeginTx may have pinged the pooled connection; nothing after it may
	got := lock(t, t.Context(), tx, 2)
	b := "b"
	assert.Equal(t, []lockedRow{{id: 1, payload: []byte("one")}, {id: 2, payload: []byte("two"), note: &b}}, got,
		"rows are scanned as pgx scans them, NULL included")
	assert.Equal(t, int64(1), e.proxy.Sends()-before, "BEGIN went with the query")

	_, err = tx.ExecContext(t.Context(), "DELETE FROM rows WHERE id = ANY($1)", []int64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, int64(1), e.proxy.Sends()-before, "the DELETE waits for the commit")
	assert.Equal(t, []int64{1, 2, 3}, e.ids(t))

	require.NoError(t, tx.Commit())
	assert.Equal(t, int64(2), e.proxy.Sends()-before, "the DELETE went with COMMIT")
	assert.Equal(t, []int64{3}, e.ids(t), "deleted and committed")
}

func TestPipelinedTx_runs_at_the_isolation_level_asked(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newPipelineEnv(t)

	tx := begin(t, e)
	rows, err := tx.QueryContext(t.Context(), "SHOW transaction_isolation")
	require.NoError(t, err)
	require.True(t, rows.Next())
	var level string
	require.NoError(t, rows.Scan(&level))
	assert.Equal(t, "read committed", level)
	require.NoError(t, tx.Commit())

	_, err = messaging.PipelinedBeginner(e.proxied).BeginTx(t.Context(), &sql.TxOptions{Isolation: sql.LevelLinearizable})
	require.Error(t, err, "a level PostgreSQL does not have")
}

func TestPipelinedTx_an_empty_read_is_two_round_trips_and_a_bare_commit_none(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newPipelineEnv(t)
	_, err := e.direct.ExecContext(t.Context(), "DELETE FROM rows")
	require.NoError(t, err)

	tx := begin(t, e) // first use: the statements are prepared
	assert.Empty(t, lock(t, t.Context(), tx, 16))
	require.NoError(t, tx.Commit())

	tx = begin(t, e)
	before := e.proxy.Sends()
	assert.Empty(t, lock(t, t.Context(), tx, 16))
	require.NoError(t, tx.Commit())
	assert.Equal(t, int64(2), e.proxy.Sends()-before)

	tx = begin(t, e)
	before = e.proxy.Sends()
	require.NoError(t, tx.Commit())
	assert.Equal(t, int64(0), e.proxy.Sends()-before, "no statement, no transaction to end")
	require.ErrorIs(t, tx.Commit(), sql.ErrTxDone)
}

func TestPipelinedTx_a_failed_held_statement_fails_the_commit_and_keeps_the_rows(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newPipelineEnv(t)

	tx := begin(t, e)
	require.Len(t, lock(t, t.Context(), tx, 3), 3)
	_, err := tx.ExecContext(t.Context(), "DELETE FROM rows WHERE id = ANY($1)", []int64{1, 2, 3})
	require.NoError(t, err)
	_, err = tx.ExecContext(t.Context(), "INSERT INTO rows (id) VALUES (NULL)") // fails: a NULL key
	require.NoError(t, err, "held back: the error comes with the commit")
	require.Error(t, tx.Commit())
	assert.Equal(t, []int64{1, 2, 3}, e.ids(t), "nothing of the transaction was committed")

	// The one pooled connection is usable again (or was replaced): its rows
	// are not locked by a transaction left open.
	tx = begin(t, e)
	assert.Len(t, lock(t, t.Context(), tx, 3), 3)
	require.NoError(t, tx.Rollback())
}

func TestPipelinedTx_rollback_unlocks_and_keeps_the_rows(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newPipelineEnv(t)

	tx := begin(t, e)
	require.Len(t, lock(t, t.Context(), tx, 2), 2)
	_, err := tx.ExecContext(t.Context(), "DELETE FROM rows WHERE id = ANY($1)", []int64{1, 2})
	require.NoError(t, err)

	// While it holds them, another forwarder's read skips them.
	other, err := e.direct.BeginTx(t.Context(), &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	require.NoError(t, err)
	var first int64
	require.NoError(t, other.QueryRowContext(t.Context(), "SELECT id FROM rows ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").Scan(&first))
	assert.Equal(t, int64(3), first)
	require.NoError(t, other.Rollback())

	require.NoError(t, tx.Rollback())
	assert.Equal(t, []int64{1, 2, 3}, e.ids(t), "the held DELETE never ran")
	require.ErrorIs(t, tx.Rollback(), sql.ErrTxDone)

	tx = begin(t, e)
	assert.Len(t, lock(t, t.Context(), tx, 3), 3, "the rows were unlocked")
	require.NoError(t, tx.Commit())
}
