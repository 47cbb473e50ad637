package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// openDB opens dsn through pgx's database/sql driver, with queries that
// carry no arguments sent over the simple query protocol.
//
// Why: bun formats its arguments into the SQL text, so nearly every query it
// sends is a text PostgreSQL has never seen (an order's id, a batch's
// arrays). pgx's default mode (QueryExecModeCacheStatement) prepares each new
// text before running it, a round trip of its own plus a plan the server
// keeps, and once the connection's cache of 512 is full it evicts one and
// closes it on the server: for a query that will never be sent again, two
// round trips and a server-side statement too many. The simple protocol
// sends the text and gets the rows in one round trip, as bun's own driver
// does. pgx already runs an Exec without arguments that way; only Query does
// not, so the connection below asks for it per query. Queries with arguments
// keep the statement cache.
//
// The forwarders' pool (OpenRelay) is the opposite case: watermill-sql sends
// a handful of texts there, over and over, so cached is what it opens.
func openDB(dsn string, cached bool) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cached {
		return sql.OpenDB(stdlib.GetConnector(*cfg)), nil
	}
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
