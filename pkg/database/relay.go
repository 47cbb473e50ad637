package database

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
)

// OpenRelay opens the connection pool of the outbox forwarders: the same
// database, with two settings of its own.
//
// synchronous_commit is off: a forwarder's transaction deletes rows whose
// events RabbitMQ confirmed; if PostgreSQL crashed before flushing that
// commit, the rows come back and are published again, a duplicate the
// consumers absorb, never a loss. The fsyncs are left to the transactions
// that must be durable (an accepted order, an issued invoice).
//
// enable_seqscan is off, so that the forwarders find their rows through
// the outbox's primary key however the planner sizes the table. A forwarder
// reads the oldest rows and deletes a batch by offset, both prepared once
// per connection by pgx (the pool caches every statement). An outbox holds
// few live rows, so a plan made when the table looks small is a sequential
// scan, and the connection keeps it while deleted rows pile up until the
// next vacuum: every read and DELETE then walks all of them. The setting
// takes sequential scans out of the planner's choices only where an index
// serves.
// (osm2pgsql turns it off for the same trap: osm2pgsql-dev/osm2pgsql#1997.)
func OpenRelay(ctx context.Context, dsn string, maxConns int) (*sql.DB, error) {
	// pgx passes parameters it does not know to the server as settings.
	settings := [][2]string{{"synchronous_commit", "off"}, {"enable_seqscan", "off"}}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		q := u.Query()
		for _, s := range settings {
			q.Set(s[0], s[1])
		}
		u.RawQuery = q.Encode()
		dsn = u.String()
	} else {
		for _, s := range settings { // a key=value DSN
			dsn += " " + s[0] + "=" + s[1]
		}
	}
	db, err := openWith(ctx, dsn, true)
	if err != nil {
		return nil, fmt.Errorf("outbox relay: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	return db, nil
}
