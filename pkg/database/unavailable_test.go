package database_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestIsUnavailable_classifies(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("insert order: %w", &pgconn.PgError{Code: code}) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "connection exception 08006", err: pg("08006"), want: true},
		{name: "client unable to establish 08001", err: pg("08001"), want: true},
		{name: "admin shutdown 57P01", err: pg("57P01"), want: true},
		{name: "crash shutdown 57P02", err: pg("57P02"), want: true},
		{name: "cannot connect now 57P03", err: pg("57P03"), want: true},
		{name: "too many connections 53300", err: pg("53300"), want: true},
		{name: "disk full 53100", err: pg("53100"), want: false},
		{name: "query canceled 57014", err: pg("57014"), want: false},
		{name: "unique violation", err: pg("23505"), want: false},
		{name: "syntax error", err: pg("42601"), want: false},
		{name: "serialization failure", err: pg("40001"), want: false},
		{name: "connection refused", err: fmt.Errorf("dial: %w", syscall.ECONNREFUSED), want: true},
		{name: "connection reset", err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, want: true},
		{name: "bad conn", err: fmt.Errorf("query: %w", driver.ErrBadConn), want: true},
		{name: "conn done", err: sql.ErrConnDone, want: true},
		{name: "joined with another error", err: errors.Join(errors.New("rollback"), pg("57P01")), want: true},
		{name: "no rows", err: sql.ErrNoRows, want: false},
		{name: "caller cancelled", err: context.Canceled, want: false},
		{name: "caller deadline", err: fmt.Errorf("query: %w", context.DeadlineExceeded), want: false},
		{name: "plain error", err: errors.New("boom"), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, database.IsUnavailable(tt.err), "%v", tt.err)
		})
	}
}

// TestIsUnavailable_real_failures gets its errors from a real PostgreSQL:
// the server's own refusals, and a database cut off by a proxy.
func TestIsUnavailable_real_failures(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url, proxy := testkit.ProxiedURL(t, testkit.NewDatabase(t))
	db := open(t, url, 4)
	ctx := t.Context()

	raise := func(code string) error {
		_, err := db.ExecContext(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '%s'; END $$`, code))
		return err
	}
	assert.True(t, database.IsUnavailable(raise("57P03")), "cannot_connect_now")
	assert.True(t, database.IsUnavailable(raise("08006")), "connection_failure")
	assert.False(t, database.IsUnavailable(raise("23505")), "unique_violation")
	_, err := db.ExecContext(ctx, `SELEC 1`)
	assert.False(t, database.IsUnavailable(err), "syntax error: %v", err)

	// A connection held across the cut, and a pool that must dial anew.
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(ctx))
	proxy.Cut()
	_, err = conn.ExecContext(ctx, `SELECT 1`)
	require.Error(t, err)
	assert.True(t, database.IsUnavailable(err), "a connection cut mid-use: %v", err)
	for range 3 { // every idle connection of the pool is dead too
		err = db.PingContext(ctx)
		require.Error(t, err)
		assert.True(t, database.IsUnavailable(err), "a pool cut off: %v", err)
	}
	_, err = db.NewRaw(`CREATE TABLE t (id int)`).Exec(ctx)
	require.Error(t, err)
	assert.True(t, database.IsUnavailable(err), "a statement while cut off: %v", err)

	proxy.Restore()
	require.NoError(t, db.PingContext(ctx), "the pool recovers")
}
