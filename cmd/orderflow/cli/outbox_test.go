package cli_test

import (
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/cmd/orderflow/cli"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// outboxDatabase is a fresh database with the services' outbox table and
// rows of the given ages (seconds), as a service leaves them.
func outboxDatabase(t *testing.T, ages ...int) string {
	t.Helper()
	url := testkit.NewDatabase(t)
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(t.Context(), outbox.TableDDL)
	require.NoError(t, err)
	for _, a := range ages {
		_, err = db.ExecContext(t.Context(), `INSERT INTO `+outbox.Table+
			` (uuid, payload, metadata, created_at) VALUES (gen_random_uuid()::text, '{}', '{}', now() - make_interval(secs => $1))`, a)
		require.NoError(t, err)
	}
	return url
}

type outboxRow struct {
	Service   string   `json:"service"`
	Rows      *int64   `json:"rows"`
	Oldest    *string  `json:"oldest_created_at"`
	OldestAge *float64 `json:"oldest_age_seconds"`
	Error     string   `json:"error"`
}

func outboxJSON(t *testing.T, r result) []outboxRow {
	t.Helper()
	var rows []outboxRow
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows), r.stdout)
	require.Len(t, rows, 2)
	return rows
}

func TestOutbox_status(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	orders := outboxDatabase(t, 95, 3, 1)
	invoices := outboxDatabase(t)
	env := map[string]string{"ORDERS_DATABASE_URL": orders, "INVOICES_DATABASE_URL": invoices}

	r := run(t, nil, env, "outbox", "status")
	requireOK(t, r)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 3, r.stdout)
	assert.Regexp(t, `^SERVICE\s+ROWS\s+OLDEST$`, lines[0])
	assert.Regexp(t, `^orders\s+3\s+(1m35s|1m36s|2m0s)$`, lines[1])
	assert.Regexp(t, `^invoices\s+0\s+-$`, lines[2])

	r = run(t, nil, env, "outbox", "status", "--json")
	requireOK(t, r)
	rows := outboxJSON(t, r)
	assert.Equal(t, "orders", rows[0].Service)
	require.NotNil(t, rows[0].Rows)
	assert.Equal(t, int64(3), *rows[0].Rows)
	require.NotNil(t, rows[0].OldestAge)
	assert.InDelta(t, 95, *rows[0].OldestAge, 5)
	assert.NotNil(t, rows[0].Oldest)
	assert.Empty(t, rows[0].Error)
	assert.Equal(t, "invoices", rows[1].Service)
	require.NotNil(t, rows[1].Rows)
	assert.Equal(t, int64(0), *rows[1].Rows)
	assert.Nil(t, rows[1].Oldest, "no oldest row in an empty outbox")
	assert.Nil(t, rows[1].OldestAge)

	// The flags win over the environment.
	r = run(t, nil, map[string]string{"ORDERS_DATABASE_URL": "postgres://postgres@127.0.0.1:1/x"},
		"outbox", "status", "--json", "--orders-database-url", invoices, "--invoices-database-url", orders)
	requireOK(t, r)
	rows = outboxJSON(t, r)
	assert.Equal(t, int64(0), *rows[0].Rows)
	assert.Equal(t, int64(3), *rows[1].Rows)
}

func TestOutbox_status_database_out_of_reach(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	orders := outboxDatabase(t, 2)
	invoices, proxy := testkit.ProxiedURL(t, outboxDatabase(t))
	proxy.Cut()
	env := map[string]string{"ORDERS_DATABASE_URL": orders, "INVOICES_DATABASE_URL": invoices}

	r := run(t, nil, env, "outbox", "status", "--json")
	requireFailed(t, r, "error: invoices: cannot read the outbox at "+invoices)
	assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	rows := outboxJSON(t, r) // stdout stays JSON, with the service that could be read
	assert.Equal(t, int64(1), *rows[0].Rows)
	assert.Nil(t, rows[1].Rows)
	assert.Contains(t, rows[1].Error, "invoices: cannot read the outbox")

	r = run(t, nil, env, "outbox", "status")
	require.Equal(t, cli.ExitFail, r.code)
	assert.Regexp(t, `(?m)^invoices\s+\?\s+\?$`, r.stdout)
}

func TestOutbox_status_without_outbox_table(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	env := map[string]string{"ORDERS_DATABASE_URL": testkit.NewDatabase(t), "INVOICES_DATABASE_URL": outboxDatabase(t)}

	r := run(t, nil, env, "outbox", "status")
	requireFailed(t, r, `error: orders: no outbox table "watermill_outbox" in `)
	assert.Contains(t, r.stderr, "has the service run its migrations?")
}

func TestOutbox_status_hides_passwords(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	_, proxy := testkit.ProxiedURL(t, testkit.PostgresURL())
	proxy.Cut()
	url := "postgres://postgres:hunter2@" + proxy.Addr() + "/orders?sslmode=disable"

	r := run(t, nil, nil, "outbox", "status", "--orders-database-url", url, "--invoices-database-url", url)
	require.Equal(t, cli.ExitFail, r.code)
	assert.NotContains(t, r.stderr, "hunter2")
	assert.Contains(t, r.stderr, "postgres://postgres:xxxxx@")
}
