package messaging

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSkipLockedSchema(t *testing.T) {
	t.Parallel()
	s := skipLockedSchema{PostgreSQLQueueSchema: outboxSchema(16)}
	q, err := s.SelectQuery(wsql.SelectQueryParams{Topic: OutboxTopic})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(q.Query, "FOR UPDATE SKIP LOCKED"), q.Query)
	assert.Contains(t, q.Query, "LIMIT 16")
	assert.Contains(t, q.Query, OutboxTable)
	assert.Equal(t, sql.LevelReadCommitted, s.SubscribeIsolationLevel())
}

func TestOutboxWaker_wakes_one_waiter_per_commit_and_never_blocks(t *testing.T) {
	t.Parallel()
	w := NewOutboxWaker()
	for range 10 {
		w.Committed() // never blocks, even with nobody waiting
	}
	select {
	case <-w.wakeups():
	default:
		t.Fatal("a pending wake-up is kept for the next waiter")
	}
	select {
	case <-w.wakeups():
		t.Fatal("wake-ups do not pile up: one is enough for a forwarder to drain the outbox")
	default:
	}
	var nilWaker *OutboxWaker
	nilWaker.Committed()
	assert.Nil(t, nilWaker.wakeups())
}

func TestNotifyBackoff(t *testing.T) {
	t.Parallel()
	log := watermill.NopLogger{}
	wake := make(chan struct{}, 1)
	b := notifyBackoff{wake: wake, fallback: time.Hour, retry: 3 * time.Second, linger: 2 * time.Millisecond}

	assert.Zero(t, b.HandleError(log, false, nil), "rows were found: query again at once")
	assert.Equal(t, 3*time.Second, b.HandleError(log, false, assertErr("connection refused")))
	assert.Zero(t, b.HandleError(log, false, assertErr("could not serialize access due to concurrent update")))
	assert.Zero(t, b.HandleError(log, false, assertErr("current transaction is aborted")))
	canceled := fmt.Errorf("could not begin tx for querying: %w", context.Canceled)
	assert.Equal(t, 3*time.Second, b.HandleError(errorLogger{t}, false, canceled),
		"shutting down: back off without an error log")
	unconfirmed := fmt.Errorf("could not get ack message query: %w", fmt.Errorf("publish outbox batch: %w", errClosingUnconfirmed))
	assert.Equal(t, 3*time.Second, b.HandleError(errorLogger{t}, false, unconfirmed),
		"closed with publishes unconfirmed: the batch stays, no error log")

	wake <- struct{}{}
	assert.Equal(t, 2*time.Millisecond, b.HandleError(log, true, nil), "woken: linger, then query")

	closing := make(chan struct{})
	close(closing)
	b.closing = closing
	assert.Zero(t, b.HandleError(log, true, nil), "closing: return at once")
}

func TestNotifyBackoff_short_batch_waits_for_a_wakeup(t *testing.T) {
	t.Parallel()
	log := watermill.NopLogger{}
	wake := make(chan struct{}, 1)
	rows := &rowCount{}
	b := notifyBackoff{wake: wake, fallback: time.Hour, retry: time.Second, linger: 2 * time.Millisecond, rows: rows, batch: 4}

	rows.n.Store(4)
	assert.Zero(t, b.HandleError(log, false, nil), "a full batch: query again at once")

	rows.n.Store(3)
	wake <- struct{}{} // a commit since the query
	assert.Equal(t, 2*time.Millisecond, b.HandleError(log, false, nil), "a short batch: the next query waits for a commit")

	done := make(chan time.Duration, 1)
	go func() { done <- b.HandleError(log, false, nil) }()
	select {
	case <-done:
		t.Fatal("a short batch and no commit since: the forwarder must wait")
	default:
	}
	wake <- struct{}{}
	select {
	case d := <-done:
		assert.Equal(t, 2*time.Millisecond, d)
	case <-time.After(10 * time.Second):
		t.Fatal("the wake-up did not end the wait")
	}
}

func TestSkipLockedSchema_counts_rows(t *testing.T) {
	t.Parallel()
	rows := &rowCount{}
	rows.n.Store(7)
	s := skipLockedSchema{PostgreSQLQueueSchema: outboxSchema(4), rows: rows}
	_, err := s.SelectQuery(wsql.SelectQueryParams{Topic: OutboxTopic})
	require.NoError(t, err)
	assert.Zero(t, rows.n.Load(), "each query starts a new count")
}

type assertErr string

func (e assertErr) Error() string { return string(e) }

func TestConcurrent_handles_n_messages_at_once(t *testing.T) {
	t.Parallel()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	const n = 4
	sub := Concurrent(pubsub, n)
	msgs, err := sub.Subscribe(context.Background(), "topic")
	require.NoError(t, err)

	for range n {
		require.NoError(t, pubsub.Publish("topic", message.NewMessage(watermill.NewUUID(), nil)))
	}
	// Each of the n subscriptions hands out a message and waits for its ack
	// before the next: n are out at once without any being acked. (gochannel
	// gives every subscription every message, where RabbitMQ's competing
	// consumers split them; this test is about concurrency, and the e2e
	// scale-out test counts the consumers on a real queue.)
	var got []*message.Message
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("only %d of %d messages handed out before any ack", len(got), n)
		}
	}
	var wg sync.WaitGroup
	for _, m := range got {
		wg.Go(func() { m.Ack() })
	}
	wg.Wait()
	assert.Same(t, pubsub, Concurrent(pubsub, 1), "n below 2 is the subscriber itself")
}

// errorLogger fails the test on an error log.
type errorLogger struct{ t *testing.T }

func (l errorLogger) Error(msg string, err error, _ watermill.LogFields) {
	l.t.Errorf("unexpected error log %q: %v", msg, err)
}
func (errorLogger) Info(string, watermill.LogFields)                   {}
func (errorLogger) Debug(string, watermill.LogFields)                  {}
func (errorLogger) Trace(string, watermill.LogFields)                  {}
func (l errorLogger) With(watermill.LogFields) watermill.LoggerAdapter { return l }

func TestOutboxWaker_covered_by_a_started_read(t *testing.T) {
	t.Parallel()
	w := NewOutboxWaker()
	assert.True(t, w.covered(), "no commits: nothing to fetch")
	w.Committed()
	assert.False(t, w.covered(), "a commit no read has seen")
	w.reading()
	assert.True(t, w.covered(), "a read that started after the commit sees it")
	w.Committed()
	w.Committed()
	assert.False(t, w.covered())
	w.reading()
	assert.True(t, w.covered())

	var nilWaker *OutboxWaker
	nilWaker.reading()
	assert.False(t, nilWaker.covered(), "without a waker every wake-up counts")
}

func TestNotifyBackoff_skips_wakeups_a_read_covers(t *testing.T) {
	t.Parallel()
	log := watermill.NopLogger{}
	w := NewOutboxWaker()
	b := notifyBackoff{waker: w, wake: w.wakeups(), fallback: 20 * time.Millisecond, retry: time.Second, linger: 2 * time.Millisecond}

	w.Committed() // its wake-up waits in the channel...
	w.reading()   // ...but another forwarder's read already covers it
	assert.Zero(t, b.HandleError(log, true, nil), "the covered wake-up is skipped: the wait ends at the fallback poll, without a linger")
	assert.Empty(t, w.ch, "the covered wake-up was consumed")

	w.Committed() // a new commit: this one needs a read
	assert.Equal(t, 2*time.Millisecond, b.HandleError(log, true, nil), "woken: linger, then read")
}

// A batch cut short (the subscriber closed while handing over its third
// row) deletes only the rows it forwarded.
func TestConfirmingOffsets_deletes_only_forwarded_rows(t *testing.T) {
	t.Parallel()
	o := confirmingOffsets{
		PostgreSQLQueueOffsetsAdapter: outboxOffsets(),
		inflight:                      &inflight{},
	}
	rows := []wsql.Row{{Offset: 11}, {Offset: 12}, {Offset: 13}, {Offset: 14}}
	q, err := o.AckMessageQuery(wsql.AckMessageQueryParams{Topic: OutboxTopic, LastRow: rows[1], Rows: rows})
	require.NoError(t, err)
	assert.Contains(t, q.Query, "DELETE FROM "+OutboxTable)
	assert.Equal(t, "{11,12}", offsetsArg(t, q))

	q, err = o.AckMessageQuery(wsql.AckMessageQueryParams{Topic: OutboxTopic, LastRow: rows[3], Rows: rows})
	require.NoError(t, err)
	assert.Equal(t, "{11,12,13,14}", offsetsArg(t, q), "a whole batch")
}

// offsetsArg is the DELETE's one argument, the offsets, as PostgreSQL gets it.
func offsetsArg(t *testing.T, q wsql.Query) string {
	t.Helper()
	require.Len(t, q.Args, 1)
	v, ok := q.Args[0].(driver.Valuer)
	require.True(t, ok, "%T", q.Args[0])
	val, err := v.Value()
	require.NoError(t, err)
	return fmt.Sprint(val)
}
