package groupcommit

import (
	"context"
	"database/sql"

	"github.com/uptrace/bun"
)

// TxFunc is the body of a transaction, as bun's RunInTx takes it.
type TxFunc = func(ctx context.Context, tx bun.Tx) error

// DB runs the transactions of its callers in shared ones: it has bun.DB's
// RunInTx, and concurrent calls of it run one after another in one
// transaction. A store written for *bun.DB takes a DB instead and does not
// change.
//
// Each fn runs with its caller's context values (its trace and correlation
// id) but not its cancellation, which would abort the others' transaction.
// When any fn of a shared transaction fails, the transaction rolls back and
// every call runs again alone, so fn may run twice: it must set what it
// reports each time it runs, as a closure that may be retried does.
type DB struct {
	db *bun.DB
	c  *Committer[TxFunc, struct{}]
}

// NewDB returns a DB on db; cfg sizes and instruments its batches.
func NewDB(db *bun.DB, cfg Config) *DB {
	d := &DB{db: db}
	d.c = New(d.runBatch, cfg)
	return d
}

// RunInTx runs fn in a transaction shared with the calls around it, and
// returns once that transaction has committed or failed. opts must be nil:
// the calls of one transaction share its options.
func (d *DB) RunInTx(ctx context.Context, opts *sql.TxOptions, fn TxFunc) error {
	if opts != nil {
		return d.db.RunInTx(ctx, opts, fn)
	}
	_, err := d.c.Do(ctx, fn)
	return err
}

func (d *DB) runBatch(ctx context.Context, batch []Item[TxFunc]) ([]Result[struct{}], error) {
	err := d.db.RunInTx(ctx, nil, func(_ context.Context, tx bun.Tx) error {
		for _, it := range batch {
			if err := it.In(context.WithoutCancel(it.Ctx), tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return make([]Result[struct{}], len(batch)), nil
}
