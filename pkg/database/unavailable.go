package database

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err says that the database could not be
// reached or went away, rather than that the statement was wrong: a request
// that failed so may succeed when retried later (HTTP 503, not 500).
//
// It is true for errors of connecting (pgconn.ConnectError, connection
// refused or reset, a closed connection), for a connection lost mid-statement,
// and for the server's own words for it: SQLSTATE class 08 (connection
// exception), 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
// cannot_connect_now (starting up or shutting down) and 53300
// too_many_connections (the server takes no more clients). A timeout or
// cancellation of the caller's own context is not: that is the caller's
// deadline, whatever the database's state.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &netErr):
		return true
	}
	// pgconn's error for a statement on a connection it already closed
	// after a network failure is not exported.
	return strings.HasSuffix(err.Error(), "conn closed")
}
