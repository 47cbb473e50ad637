package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// openDB opens dsn through pgx's database/sql driver with one rule for
// every statement: it is planned with its own values, in one round trip.
//
// Why: PostgreSQL settles on a generic plan for a prepared statement after
// five runs, and keeps it for the connection's life. pgx's default mode
// prepares and caches every statement, so a plan made while a table is
// nearly empty (a fresh orders table, an outbox that was just vacuumed)
// goes on reading the whole table after it has grown: for the forwarders'
// read and DELETE, and for the status update's join. Instead:
//
//   - a statement with arguments (group commit's batch writes and status
//     update, watermill-sql's outbox statements) is sent as the unnamed
//     statement, its description cached per connection
//     (QueryExecModeCacheDescribe): one round trip, binary arguments, and a
//     plan for the values of each call;
//   - a query without arguments (bun formats its arguments into the SQL
//     text, so nearly every text is new) is sent over the simple query
//     protocol, as bun's own driver does: one round trip, where preparing a
//     text never sent again would cost a second one. pgx already runs an
//     Exec without arguments that way; only Query needs asking.
func openDB(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	return sql.OpenDB(simpleQueryConnector{stdlib.GetConnector(*cfg)}), nil
}

type simpleQueryConnector struct{ driver.Connector }

func (c simpleQueryConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err //nolint:wrapcheck // database/sql matches driver errors such as driver.ErrBadConn
	}
	sc, ok := conn.(*stdlib.Conn)
	if !ok { // not pgx's connection: nothing to adjust
		return conn, nil
	}
	return simpleQueryConn{sc}, nil
}

// simpleQueryConn is pgx's connection (every optional database/sql
// interface it implements is promoted) with QueryContext adjusted.
type simpleQueryConn struct{ *stdlib.Conn }

// simpleProtocol is pgx's per-query option, passed through database/sql as
// an argument (pgx's CheckNamedValue accepts any value and its Query reads
// leading options).
var simpleProtocol = []driver.NamedValue{{Ordinal: 1, Value: pgx.QueryExecModeSimpleProtocol}}

func (c simpleQueryConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		args = simpleProtocol
	}
	return c.Conn.QueryContext(ctx, query, args) //nolint:wrapcheck // as above
}
