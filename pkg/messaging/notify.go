package messaging

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// The outbox forwarders are woken in-process when a transaction that wrote
// the outbox commits, instead of polling it: watermill-sql only polls
// (PollInterval, 1 s by default), so a short interval burns queries and CPU
// on an idle system and a long one adds up to the whole interval to every
// event's latency.
//
// PostgreSQL's LISTEN/NOTIFY would also wake other replicas, but a NOTIFY
// takes a cluster-wide lock at commit that serializes every notifying
// transaction: measured here it cut POST /orders from ~450/s to ~110/s. The
// process that writes a row runs forwarders too, and forwarders take rows
// with SKIP LOCKED, so the local wake-up is enough; PollInterval remains the
// safety net for rows left by a replica that died.
//
// One commit wakes one idle forwarder, not all of them: woken together they
// would all query the outbox, and all but one would find their rows locked
// (SKIP LOCKED) and go back to sleep, a wasted transaction each.
//
// Nor does a wake-up whose commits another forwarder's read already covers:
// the waker counts commits, each forwarder notes the count just before it
// reads, and a read sees every commit counted before it started (Committed
// is called after the commit). Under load, commits arrive while a woken
// forwarder lingers and reads; without this, the wake-ups they leave behind
// sent another forwarder to find those rows locked or gone, an empty
// transaction for every third forwarded batch.
type OutboxWaker struct {
	ch      chan struct{}
	commits atomic.Uint64 // Committed calls
	read    atomic.Uint64 // the highest commit count a started read covers
}

// NewOutboxWaker returns a waker for one outbox.
func NewOutboxWaker() *OutboxWaker { return &OutboxWaker{ch: make(chan struct{}, 1)} }

// Committed wakes one idle forwarder of this outbox. Stores call it after a
// transaction that appended events has committed. A nil waker does nothing.
func (w *OutboxWaker) Committed() {
	if w == nil {
		return
	}
	w.commits.Add(1)
	select {
	case w.ch <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// reading notes, just before a forwarder reads the outbox, that the read
// will see every commit counted so far.
func (w *OutboxWaker) reading() {
	if w == nil {
		return
	}
	n := w.commits.Load()
	for {
		r := w.read.Load()
		if n <= r || w.read.CompareAndSwap(r, n) {
			return
		}
	}
}

// covered reports whether every commit so far is covered by a read that has
// started: a wake-up then has nothing to fetch.
func (w *OutboxWaker) covered() bool {
	return w != nil && w.commits.Load() <= w.read.Load()
}

func (w *OutboxWaker) wakeups() <-chan struct{} {
	if w == nil {
		return nil // never: the forwarders poll
	}
	return w.ch
}

// notifyBackoff is a watermill-sql BackoffManager. When the outbox is empty
// it waits for a wake-up, or at most fallback, and then lets the subscriber
// query again at once. Errors back off like watermill's default manager:
// not at all for a lost serialization race, retry otherwise.
type notifyBackoff struct {
	waker    *OutboxWaker
	wake     <-chan struct{}
	fallback time.Duration
	retry    time.Duration
	// linger is how long a woken forwarder waits for more commits before it
	// queries: under load one transaction then forwards a batch instead of
	// a row. It adds at most that much to an event's latency.
	linger  time.Duration
	closing <-chan struct{}
	// rows is how many rows the last query returned, out of at most batch.
	// A short batch means the outbox held no more unlocked rows when it
	// was read: rows committed since then have signalled wake, so the
	// forwarder waits for that instead of reading an empty outbox at once
	// (watermill-sql queries again after every batch: an empty transaction
	// per forwarded batch at light load). Nil: always query again.
	rows  *rowCount
	batch int
}

// rowCount is the row count of a forwarder's last outbox query.
type rowCount struct{ n atomic.Int64 }

func (b notifyBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if errors.Is(err, context.Canceled) || errors.Is(err, errClosingUnconfirmed) {
		return b.retry // shutting down: the subscriber stops before the retry, and nothing went wrong
	}
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "concurrent update") || strings.Contains(msg, "deadlock") ||
			strings.Contains(msg, "transaction is aborted") {
			return 0
		}
		logger.Error("query outbox", err, watermill.LogFields{"retry_in": b.retry.String()})
		return b.retry
	}
	if !noMsg && (b.rows == nil || b.rows.n.Load() >= int64(b.batch)) {
		return 0 // a full batch: there may be more
	}
	t := time.NewTimer(b.fallback)
	defer t.Stop()
	for {
		select {
		case <-b.wake:
			if b.waker.covered() {
				continue // another forwarder's read has these commits
			}
			return b.linger
		case <-t.C:
		case <-b.closing:
		}
		return 0
	}
}
