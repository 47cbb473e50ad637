package messaging

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/pkg/database"
)

// A forwarder's transaction in two round trips instead of four.
//
// watermill-sql runs each forwarded batch as BEGIN, the locking SELECT, the
// DELETE of the rows it forwarded, and COMMIT: four round trips through
// database/sql, one per statement, where each is a wake-up and a pair of
// system calls on both sides. At moderate load a batch holds a row or two,
// so these were most of the statements PostgreSQL served per order (its
// INSERT with the outbox row is one).
//
// pipelinedBeginner keeps watermill-sql's transaction as it is and only
// changes when statements travel: BEGIN is held back and sent in one pgx
// batch (the extended protocol's pipeline) with the first query, and the
// statements that return no rows (the DELETE) are held back and sent with
// COMMIT. An empty read costs two round trips instead of three.
//
// Nothing about the outcome changes: the same statements run in the same
// order in the same transaction. A held-back DELETE that fails makes Commit
// fail (watermill-sql logs it; the rows stay and are forwarded again: a
// duplicate, never a loss), exactly as a DELETE that failed on its own
// would have left the transaction unable to commit. What changes is when an
// error is seen, and ExecContext's RowsAffected, which is not known before
// the commit (watermill-sql only logs it).
//
// watermill-sql accepts any Beginner for this; database/sql cannot pipeline,
// so each call reaches pgx's own connection through sql.Conn.Raw.
type pipelinedBeginner struct {
	wsql.Beginner // statements outside a transaction, as watermill-sql's own adapter runs them
	db            *sql.DB
}

func newPipelinedBeginner(db *sql.DB) pipelinedBeginner {
	return pipelinedBeginner{Beginner: wsql.BeginnerFromStdSQL(db), db: db}
}

// BeginTx takes a connection from the pool and sends nothing yet.
func (b pipelinedBeginner) BeginTx(ctx context.Context, opts *sql.TxOptions) (wsql.Tx, error) {
	begin, err := beginStatement(opts)
	if err != nil {
		return nil, err
	}
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox transaction: %w", err)
	}
	return &pipelinedTx{conn: conn, ctx: ctx, begin: begin}, nil
}

func beginStatement(opts *sql.TxOptions) (string, error) {
	if opts == nil {
		return "BEGIN", nil
	}
	begin := "BEGIN"
	switch opts.Isolation {
	case sql.LevelDefault:
	case sql.LevelReadCommitted:
		begin += " ISOLATION LEVEL READ COMMITTED"
	case sql.LevelRepeatableRead:
		begin += " ISOLATION LEVEL REPEATABLE READ"
	case sql.LevelSerializable:
		begin += " ISOLATION LEVEL SERIALIZABLE"
	default:
		return "", fmt.Errorf("outbox transaction: isolation level %v not supported", opts.Isolation)
	}
	if opts.ReadOnly {
		begin += " READ ONLY"
	}
	return begin, nil
}

// pipelinedTx is one transaction on one connection. watermill-sql uses it
// from one goroutine.
type pipelinedTx struct {
	conn  *sql.Conn
	ctx   context.Context //nolint:containedctx // watermill-sql's Commit and Rollback take none; this is the one BeginTx got
	begin string          // the BEGIN statement, until it is sent
	sent  bool            // BEGIN went to the server: the transaction must be ended there
	held  []heldStatement // statements without rows, not sent yet
	done  bool
}

type heldStatement struct {
	query string
	args  []any
}

var errTxDone = fmt.Errorf("outbox transaction: %w", sql.ErrTxDone)

// ExecContext holds the statement back until the next query or the commit.
func (t *pipelinedTx) ExecContext(_ context.Context, query string, args ...any) (wsql.Result, error) {
	if t.done {
		return nil, errTxDone
	}
	t.held = append(t.held, heldStatement{query: query, args: args})
	return heldResult{}, nil
}

// QueryContext sends what was held back (BEGIN, statements without rows)
// and the query in one round trip, and returns the query's rows, read in
// full (a forwarder's batch is a few rows).
func (t *pipelinedTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	if t.done {
		return nil, errTxDone
	}
	rows := &bufferedRows{}
	err := t.send(ctx, heldStatement{query: query, args: args}, func(br pgx.BatchResults) error {
		r, err := br.Query()
		if err != nil {
			return err //nolint:wrapcheck // wrapped by send
		}
		defer r.Close()
		rows.typeMap = r.Conn().TypeMap()
		rows.fields = append([]pgconn.FieldDescription(nil), r.FieldDescriptions()...) // valid only until r closes
		for r.Next() {
			raw := r.RawValues()
			values := make([][]byte, len(raw))
			for i, v := range raw {
				if v != nil { // NULL stays nil
					values[i] = append([]byte{}, v...)
				}
			}
			rows.values = append(rows.values, values)
		}
		return r.Err() //nolint:wrapcheck // wrapped by send
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// Commit sends what was held back with COMMIT, in one round trip.
func (t *pipelinedTx) Commit() error {
	if t.done {
		return errTxDone
	}
	if !t.sent && len(t.held) == 0 { // nothing ran: there is no transaction to end
		return t.release(nil)
	}
	err := t.send(t.ctx, heldStatement{query: "COMMIT"}, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && tag.String() == "ROLLBACK" { // the transaction had failed
			return pgx.ErrTxCommitRollback
		}
		return err //nolint:wrapcheck // wrapped by send
	})
	if err != nil {
		return t.release(errors.Join(err, t.rollback()))
	}
	return t.release(nil)
}

// Rollback ends the transaction on the server if it was begun there; what
// was held back is dropped.
func (t *pipelinedTx) Rollback() error {
	if t.done {
		return errTxDone
	}
	return t.release(t.rollback())
}

func (t *pipelinedTx) rollback() error {
	t.held = nil
	if !t.sent {
		return nil
	}
	return t.raw(func(c *pgx.Conn) error {
		_, err := c.Exec(context.WithoutCancel(t.ctx), "ROLLBACK")
		return err //nolint:wrapcheck // wrapped by raw
	})
}

// release returns the connection to the pool. A connection left inside a
// transaction (a ROLLBACK that failed) is discarded by pgx's driver when
// database/sql resets it.
func (t *pipelinedTx) release(err error) error {
	t.done = true
	return errors.Join(err, t.conn.Close())
}

// send runs BEGIN (if not sent yet), the held statements and last as one
// pgx batch; read gets last's results.
func (t *pipelinedTx) send(ctx context.Context, last heldStatement, read func(pgx.BatchResults) error) error {
	return t.raw(func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		if !t.sent {
			b.Queue(t.begin)
		}
		for _, s := range t.held {
			b.Queue(s.query, s.args...)
		}
		b.Queue(last.query, last.args...)
		begin, held := !t.sent, len(t.held)
		t.sent, t.held = true, nil // from here the server may be inside the transaction
		br := c.SendBatch(ctx, b)
		err := func() error {
			if begin {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("begin: %w", err)
				}
			}
			for range held {
				if _, err := br.Exec(); err != nil {
					return err //nolint:wrapcheck // the statement's own error
				}
			}
			return read(br)
		}()
		return errors.Join(err, br.Close())
	})
}

// raw runs f with pgx's connection under the pooled one.
func (t *pipelinedTx) raw(f func(*pgx.Conn) error) error {
	var ferr error
	err := t.conn.Raw(func(dc any) error {
		pc, ok := database.PgxConn(dc)
		if !ok {
			return fmt.Errorf("%T is not pgx's connection", dc)
		}
		ferr = f(pc)
		if ferr != nil && pc.IsClosed() {
			return driver.ErrBadConn // database/sql drops it
		}
		return nil
	})
	if ferr != nil {
		return fmt.Errorf("outbox transaction: %w", ferr)
	}
	if err != nil {
		return fmt.Errorf("outbox transaction: %w", err)
	}
	return nil
}

// heldResult is the result of a statement sent later, with the commit.
type heldResult struct{}

var errRowsAffectedUnknown = errors.New("rows affected are known only after the commit")

func (heldResult) RowsAffected() (int64, error) { return 0, errRowsAffectedUnknown }

// bufferedRows are a query's rows read in full, scanned as pgx scans them.
type bufferedRows struct {
	typeMap *pgtype.Map
	fields  []pgconn.FieldDescription
	values  [][][]byte
	next    int
}

func (r *bufferedRows) Next() bool {
	if r.next >= len(r.values) {
		return false
	}
	r.next++
	return true
}

func (r *bufferedRows) Scan(dest ...any) error {
	if r.next == 0 || r.next > len(r.values) {
		return errors.New("outbox transaction: Scan called without a row")
	}
	if err := pgx.ScanRow(r.typeMap, r.fields, r.values[r.next-1], dest...); err != nil {
		return fmt.Errorf("outbox transaction: %w", err)
	}
	return nil
}

func (r *bufferedRows) Close() error { return nil }
