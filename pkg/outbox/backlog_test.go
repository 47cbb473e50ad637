package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// A writer held back by a full outbox goes on as soon as a count finds room
// again; one that finds no room in time is refused; within the bound nothing
// waits.
func TestBacklog_holds_writes_back_until_the_outbox_has_room(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db, err := database.Open(t.Context(), database.Config{URL: testkit.NewDatabase(t), Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	exec(t, db, outbox.TableDDL)
	fill := func(n int) {
		exec(t, db, `INSERT INTO `+outbox.Table+` (uuid, payload, metadata) SELECT gen_random_uuid()::text, '{}', '{}' FROM generate_series(1, ?)`, n)
	}

	b := outbox.NewBacklog(db, 3, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { defer close(ran); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })

	fill(3)
	assert.True(t, b.Wait(t.Context(), 0), "three rows are within a bound of three")

	fill(1)
	testkit.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if rows, over := b.Over(); !over {
			return fmt.Errorf("%d rows counted, not over the bound yet", rows)
		}
		return nil
	})
	assert.False(t, b.Wait(t.Context(), 50*time.Millisecond), "no room within the wait")
	gone, stop := context.WithCancel(t.Context())
	stop()
	assert.False(t, b.Wait(gone, time.Hour), "a request that went away stops waiting")

	admitted := make(chan bool)
	go func() { admitted <- b.Wait(t.Context(), time.Minute) }()
	exec(t, db, `DELETE FROM `+outbox.Table+` WHERE "offset" = (SELECT min("offset") FROM `+outbox.Table+`)`)
	select {
	case ok := <-admitted:
		assert.True(t, ok, "admitted once a count finds room")
	case <-time.After(10 * time.Second):
		t.Fatal("still held back ten seconds after the outbox had room")
	}
	rows, over := b.Over()
	assert.False(t, over)
	assert.Equal(t, int64(3), rows)
}

// With no bound, nothing is counted and nothing waits.
func TestBacklog_without_a_bound_never_waits(t *testing.T) {
	t.Parallel()
	b := outbox.NewBacklog(nil, 0, time.Millisecond)
	b.Run(t.Context()) // returns at once: no database is touched
	assert.True(t, b.Wait(t.Context(), 0))
	_, over := b.Over()
	assert.False(t, over)
}

func exec(t *testing.T, db bun.IDB, query string, args ...any) {
	t.Helper()
	_, err := db.ExecContext(t.Context(), query, args...)
	require.NoError(t, err)
}
