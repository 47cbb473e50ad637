package outbox

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// Backlog bounds the outbox: it is how a service that writes faster than its
// forwarder publishes is slowed to the forwarder's pace (back-pressure), and
// how it stops accepting writes while RabbitMQ is down (load shedding). Past
// some size, a service that goes on accepting writes only grows a queue it
// cannot drain in any useful time, and the event of every new write waits
// behind it.
//
// Backlog counts the waiting rows every interval, at most max+1 of them, so
// that a count costs the same however large the backlog grows. Over says
// whether more than max waited at the last count; Wait waits for a count that
// finds max or fewer. Nothing is refused here: the caller decides what to
// hold back or refuse (orders holds POST /orders, then refuses it), and
// everything already accepted is forwarded as usual.
type Backlog struct {
	db       bun.IDB
	max      int64
	interval time.Duration
	rows     atomic.Int64

	mu   sync.Mutex
	room chan struct{} // closed while the last count found max or fewer
}

// NewBacklog returns the backlog of db's outbox, bounded at max rows and
// counted every interval. A max of 0 or less bounds nothing.
func NewBacklog(db bun.IDB, max int64, interval time.Duration) *Backlog {
	room := make(chan struct{})
	close(room)
	return &Backlog{db: db, max: max, interval: interval, room: room}
}

// Max is the bound (0 or less: none).
func (b *Backlog) Max() int64 { return b.max }

// Over returns the rows counted last (at most max+1) and whether they are
// more than max.
func (b *Backlog) Over() (rows int64, over bool) {
	rows = b.rows.Load()
	return rows, b.max > 0 && rows > b.max
}

// Wait returns true at once while the backlog is within its bound. Over it,
// it waits up to d for a count that finds the backlog within the bound again
// and returns whether one did (false also when ctx ends first).
func (b *Backlog) Wait(ctx context.Context, d time.Duration) bool {
	b.mu.Lock()
	room := b.room
	b.mu.Unlock()
	select {
	case <-room:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-room:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
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
			b.set(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// set records a count and opens or closes the room Wait waits for.
func (b *Backlog) set(rows int64) {
	b.rows.Store(rows)
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.room: // open
		if rows > b.max {
			b.room = make(chan struct{})
		}
	default: // full
		if rows <= b.max {
			close(b.room)
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
