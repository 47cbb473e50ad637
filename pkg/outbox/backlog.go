package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// Backlog bounds the outbox, for load shedding. Rows pile up there while
// the forwarder cannot publish (RabbitMQ is down) or publishes more slowly
// than the service writes; past some size, a service that goes on accepting
// writes only grows a queue it cannot drain in any useful time. Backlog
// counts the waiting rows every interval, at most max+1 of them, so that a
// count costs the same however large the backlog grows, and Over says when
// more than max wait. Nothing is refused here: the caller decides what to
// refuse (orders sheds POST /orders) and everything already accepted is
// forwarded as usual.
type Backlog struct {
	db       bun.IDB
	max      int64
	interval time.Duration
	rows     atomic.Int64
}

// NewBacklog returns the backlog of db's outbox, bounded at max rows and
// counted every interval. A max of 0 or less bounds nothing.
func NewBacklog(db bun.IDB, max int64, interval time.Duration) *Backlog {
	return &Backlog{db: db, max: max, interval: interval}
}

// Max is the bound (0 or less: none).
func (b *Backlog) Max() int64 { return b.max }

// Over returns the rows counted last (at most max+1) and whether they are
// more than max.
func (b *Backlog) Over() (rows int64, over bool) {
	rows = b.rows.Load()
	return rows, b.max > 0 && rows > b.max
}

// Run counts the outbox until ctx ends; with no bound it returns at once. A
// failed count keeps the last one (a database that does not answer fails
// the writes anyway).
func (b *Backlog) Run(ctx context.Context) {
	if b.max <= 0 {
		return
	}
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		if n, err := b.count(ctx); err == nil {
			b.rows.Store(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Backlog) count(ctx context.Context) (int64, error) {
	var n int64
	err := b.db.NewRaw(`SELECT count(*) FROM (SELECT 1 FROM ? LIMIT ?) AS waiting`, bun.Safe(Table), b.max+1).Scan(ctx, &n)
	if err != nil {
		return 0, fmt.Errorf("count the outbox: %w", err)
	}
	return n, nil
}
