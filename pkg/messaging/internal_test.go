package messaging

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
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
	"github.com/uptrace/bun"
)

func TestSkipLockedSchema(t *testing.T) {
	t.Parallel()
	s := skipLockedSchema{outboxSchema(16)}
	q, err := s.SelectQuery(wsql.SelectQueryParams{Topic: OutboxTopic})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(q.Query, "FOR UPDATE SKIP LOCKED"), q.Query)
	assert.Contains(t, q.Query, "LIMIT 16")
	assert.Contains(t, q.Query, OutboxTable)
	assert.Equal(t, sql.LevelReadCommitted, s.SubscribeIsolationLevel())
}

// A batch cut short (the subscriber closed while handing over its second
// row) deletes only the rows it forwarded.
func TestForwardedOffsets_deletes_only_forwarded_rows(t *testing.T) {
	t.Parallel()
	o := forwardedOffsets{wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: outboxTableName}}
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

func TestWaker_wakes_after_a_commit_only(t *testing.T) {
	t.Parallel()
	w := NewWaker()
	ctx := context.Background()
	w.AfterQuery(ctx, &bun.QueryEvent{Query: "INSERT INTO orders …"})
	w.AfterQuery(ctx, &bun.QueryEvent{Query: "COMMIT", Err: errors.New("connection lost")})
	select {
	case <-w.channel():
		t.Fatal("woken without a commit")
	default:
	}
	w.AfterQuery(ctx, &bun.QueryEvent{Query: "COMMIT"})
	w.AfterQuery(ctx, &bun.QueryEvent{Query: "COMMIT"}) // never blocks: one wake-up is pending
	<-w.channel()
	select {
	case <-w.channel():
		t.Fatal("two wake-ups pending")
	default:
	}
	assert.Nil(t, (*Waker)(nil).channel(), "no waker: poll only")
}

func TestWakeBackoff(t *testing.T) {
	t.Parallel()
	log := watermill.NopLogger{}
	wake, stop := make(chan struct{}, 1), make(chan struct{})
	b := wakeBackoff{wake: wake, stop: stop, poll: time.Hour, retry: time.Second}
	assert.Zero(t, b.HandleError(log, false, nil), "after a batch: read again at once")
	assert.Zero(t, b.HandleError(log, false, errors.New("could not serialize access due to concurrent update")))
	assert.Equal(t, time.Second, b.HandleError(log, false, errors.New("connection refused")))
	wake <- struct{}{}
	assert.Zero(t, b.HandleError(log, true, nil), "an empty outbox waits for the wake-up")
	close(stop)
	assert.Zero(t, b.HandleError(log, true, nil), "closing ends the wait")
}

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
