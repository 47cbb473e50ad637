package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

func TestSkipLockedSchema(t *testing.T) {
	t.Parallel()
	s := skipLockedSchema{outboxSchema(16)}
	q, err := s.SelectQuery(wsql.SelectQueryParams{Topic: Topic})
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(q.Query, "FOR UPDATE SKIP LOCKED"), q.Query)
	assert.Contains(t, q.Query, "LIMIT 16")
	assert.Contains(t, q.Query, Table)
	assert.Equal(t, sql.LevelReadCommitted, s.SubscribeIsolationLevel())
}

// A batch cut short (the subscriber closed while handing over its second
// row) deletes only the rows it forwarded.
func TestForwardedOffsets_deletes_only_forwarded_rows(t *testing.T) {
	t.Parallel()
	drained := new(atomic.Bool)
	o := newForwardedOffsets(4, drained)
	rows := []wsql.Row{{Offset: 11}, {Offset: 12}, {Offset: 13}, {Offset: 14}}
	q, err := o.AckMessageQuery(wsql.AckMessageQueryParams{Topic: Topic, LastRow: rows[1], Rows: rows})
	require.NoError(t, err)
	assert.Contains(t, q.Query, "DELETE FROM "+Table)
	assert.Equal(t, "{11,12}", offsetsArg(t, q))
	assert.False(t, drained.Load(), "a full batch read: more rows may wait")

	q, err = o.AckMessageQuery(wsql.AckMessageQueryParams{Topic: Topic, LastRow: rows[3], Rows: rows})
	require.NoError(t, err)
	assert.Equal(t, "{11,12,13,14}", offsetsArg(t, q), "a whole batch")

	_, err = o.AckMessageQuery(wsql.AckMessageQueryParams{Topic: Topic, LastRow: rows[1], Rows: rows[:2]})
	require.NoError(t, err)
	assert.True(t, drained.Load(), "a short batch: the outbox had no more rows")
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
	drained := new(atomic.Bool)
	b := wakeBackoff{wake: wake, stop: stop, drained: drained, poll: time.Hour, retry: time.Second}
	assert.Zero(t, b.HandleError(log, false, nil), "after a full batch: read again at once")
	assert.Zero(t, b.HandleError(log, false, errors.New("could not serialize access due to concurrent update")))
	assert.Equal(t, time.Second, b.HandleError(log, false, errors.New("connection refused")))
	wake <- struct{}{}
	assert.Zero(t, b.HandleError(log, true, nil), "an empty outbox waits for the wake-up")
	drained.Store(true)
	wake <- struct{}{}
	assert.Zero(t, b.HandleError(log, false, nil), "after a short batch: wait for the wake-up")
	close(stop)
	assert.Zero(t, b.HandleError(log, true, nil), "closing ends the wait")
}
