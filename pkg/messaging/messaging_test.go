package messaging_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// env is one test's outbox database and vhost.
type env struct {
	db     *bun.DB
	outbox *outbox.Outbox // its waker wakes the forwarder
	waker  *outbox.Waker
	broker string
}

func newEnv(t *testing.T) env {
	t.Helper()
	box := outbox.New(watermill.NopLogger{})
	waker := box.Waker()
	db := bunDB(t, testkit.NewDatabase(t)).WithQueryHook(waker)
	_, err := db.ExecContext(t.Context(), outbox.TableDDL)
	require.NoError(t, err)
	return env{db: db, outbox: box, waker: waker, broker: testkit.NewVhost(t)}
}

// bunDB opens url with bun over pgx, as the services do.
func bunDB(tb testing.TB, url string) *bun.DB {
	tb.Helper()
	sqldb, err := sql.Open("pgx", url)
	require.NoError(tb, err)
	db := bun.NewDB(sqldb, pgdialect.New())
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// run starts a Runtime for service with the handler and waits until its
// router and forwarder run.
func (e env) run(t *testing.T, service string, maxRetries int, handlers ...cqrs.EventHandler) *platform.Runtime {
	t.Helper()
	rt := &platform.Runtime{
		Broker: messaging.BrokerConfig{URL: e.broker, AckBatching: true},
		Router: messaging.RouterConfig{
			Service: service, MaxRetries: maxRetries,
			RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
			HandlerTimeout: 5 * time.Second, CloseTimeout: 5 * time.Second,
		},
		Forwarder: outbox.ForwarderConfig{PollInterval: time.Hour, Waker: e.waker}, // a commit wakes it
		Outbox:    e.db.DB,
		Register:  func(p *messaging.EventProcessor) error { return p.AddHandlers(handlers...) },
		Log:       watermill.NopLogger{},
	}
	testkit.StartRuntime(t, rt)
	return rt
}

// publish appends events to the outbox in one committed transaction.
func (e env) publish(t *testing.T, ctx context.Context, evs ...any) {
	t.Helper()
	box := outbox.New(watermill.NopLogger{})
	require.NoError(t, e.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return box.Append(ctx, tx, evs...)
	}))
}

func (e env) channel(t *testing.T) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(e.broker)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

// nextPoisoned waits for the next message in the poison queue and acks it.
func (e env) nextPoisoned(t *testing.T, ch *amqp091.Channel, service string) amqp091.Delivery {
	t.Helper()
	var got amqp091.Delivery
	testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		d, ok, err := ch.Get(messaging.PoisonQueue(service), false)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("poison queue is empty")
		}
		got = d
		return d.Ack(false)
	})
	return got
}

func placedEvent(orderID string) *events.OrderPlaced {
	now := time.Now().UTC()
	return &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
		OrderID: orderID, CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: now,
	}
}

type received struct {
	event         events.OrderPlaced
	correlationID string
}

func TestOutbox_event_reaches_handler_with_its_identity(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	got := make(chan received, 10)
	e.run(t, "test", 3, cqrs.NewEventHandler("test.Receive", func(ctx context.Context, ev *events.OrderPlaced) error {
		got <- received{event: *ev, correlationID: observability.CorrelationID(ctx)}
		return nil
	}))

	sent := placedEvent("o-1")
	e.publish(t, observability.WithCorrelationID(t.Context(), "corr-42"), sent)

	select {
	case r := <-got:
		assert.Equal(t, sent.ID, r.event.ID)
		assert.Equal(t, sent.OrderID, r.event.OrderID)
		assert.Equal(t, "corr-42", r.correlationID)
	case <-time.After(20 * time.Second):
		t.Fatal("event not delivered")
	}
	testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if rows := testkit.CountRows(t, e.db, outbox.Table); rows != 0 {
			return fmt.Errorf("%d outbox rows left; forwarded rows are deleted", rows)
		}
		return nil
	})
}

// InsertWithEvents writes, in one statement, the rows its INSERT inserted
// and only their events; the statement wakes the forwarder (which polls
// once an hour here), and the events arrive in their callers' order.
func TestOutbox_InsertWithEvents_appends_the_events_of_inserted_rows(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	_, err := e.db.ExecContext(t.Context(), `CREATE TABLE things (id uuid PRIMARY KEY, name text UNIQUE NOT NULL)`)
	require.NoError(t, err)
	type thing struct {
		bun.BaseModel `bun:"table:things"`
		ID            string `bun:"id,type:uuid"`
		Name          string `bun:"name"`
	}
	_, err = e.db.NewInsert().Model(&thing{ID: watermill.NewUUID(), Name: "taken"}).Exec(t.Context())
	require.NoError(t, err)
	got := make(chan string, 10)
	e.run(t, "test", 3, cqrs.NewEventHandler("test.Receive", func(_ context.Context, ev *events.OrderPlaced) error {
		got <- ev.OrderID
		return nil
	}))

	rows := []thing{{ID: watermill.NewUUID(), Name: "a"}, {ID: watermill.NewUUID(), Name: "taken"}, {ID: watermill.NewUUID(), Name: "b"}}
	var ids, names []string
	writes := make([]outbox.Write, len(rows))
	for i, r := range rows {
		ids, names = append(ids, r.ID), append(names, r.Name)
		writes[i] = outbox.Write{ID: r.ID, Ctx: t.Context(), Events: []any{placedEvent(r.Name + "-1"), placedEvent(r.Name + "-2")}}
	}
	const insert = `INSERT INTO things (id, name) SELECT * FROM unnest($1::text[]::uuid[], $2::text[]) ON CONFLICT (name) DO NOTHING RETURNING id`
	inserted, err := e.outbox.InsertWithEvents(t.Context(), e.db.DB, insert, []any{ids, names}, writes)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{rows[0].ID: true, rows[2].ID: true}, inserted)

	var order []string
	for len(order) < 4 {
		select {
		case id := <-got:
			order = append(order, id)
		case <-time.After(20 * time.Second):
			t.Fatalf("got %v; the statement did not wake the forwarder", order)
		}
	}
	assert.Equal(t, []string{"a-1", "a-2", "b-1", "b-2"}, order, "only the inserted rows' events, in order")
}

// A transaction that rolls back leaves none of the events it appended.
func TestOutbox_Append_rolls_back_with_its_transaction(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	box := outbox.New(watermill.NopLogger{})
	failed := errors.New("the caller's write failed")
	err := e.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := box.Append(ctx, tx, placedEvent("o-1"), placedEvent("o-2")); err != nil {
			return err
		}
		assert.Equal(t, 2, countIn(t, tx), "both events, inside the transaction")
		return failed
	})
	require.ErrorIs(t, err, failed)
	assert.Zero(t, testkit.CountRows(t, e.db, outbox.Table))
}

func countIn(t *testing.T, tx bun.Tx) int {
	t.Helper()
	var n int
	require.NoError(t, tx.QueryRowContext(t.Context(), "SELECT count(*) FROM "+outbox.Table).Scan(&n))
	return n
}

func TestTopology_event_published_before_consumer_ever_ran_is_kept(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		queueType messaging.QueueType
		// args are the queue arguments besides x-queue-type and the
		// dead-letter exchange.
		args map[string]any
	}{
		{queueType: messaging.QueueQuorum, args: map[string]any{"x-delivery-limit": float64(20)}},
		{queueType: messaging.QueueClassic, args: map[string]any{"x-queue-version": float64(2)}},
	}
	for _, tt := range tests {
		t.Run(string(tt.queueType), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			// A publisher on its own declares the subscription queues of its topology.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			sub := messaging.Subscription{Service: "invoices", Handler: "invoices.IssueInvoiceOnOrderPlaced", Topic: messaging.EventTopic("OrderPlaced")}
			topology := messaging.Topology{Subscriptions: []messaging.Subscription{sub}, DeliveryLimit: 20, QueueType: tt.queueType}
			b, err := messaging.ConnectBroker(ctx, messaging.BrokerConfig{URL: e.broker, Topology: topology}, watermill.NopLogger{})
			require.NoError(t, err)
			defer b.Close()
			msg, err := messaging.NewMarshaler().Marshal(placedEvent("o-early"))
			require.NoError(t, err)
			require.NoError(t, b.Publisher().Publish(messaging.EventTopic("OrderPlaced"), msg))

			n, err := testkit.QueueMessages(e.broker, sub.Queue())
			require.NoError(t, err, "the invoices queue exists before invoices ever ran")
			assert.Equal(t, 1, n)
			q := testkit.QueueInfo(t, e.broker, sub.Queue())
			assert.Equal(t, string(tt.queueType), q.Type)
			want := map[string]any{"x-queue-type": string(tt.queueType), "x-dead-letter-exchange": "poison.invoices"}
			maps.Copy(want, tt.args)
			assert.Equal(t, want, q.Arguments)
			assert.Equal(t, string(tt.queueType), testkit.QueueInfo(t, e.broker, messaging.PoisonQueue("invoices")).Type)
		})
	}
}

// A service whose BROKER_QUEUE_TYPE differs from the queues already on the
// broker cannot publish, and says why rather than only what RabbitMQ said.
func TestTopology_other_queue_type_on_the_broker_is_a_clear_error(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sub := messaging.Subscription{Service: "invoices", Handler: "invoices.IssueInvoiceOnOrderPlaced", Topic: messaging.EventTopic("OrderPlaced")}
	ch := e.channel(t)
	quorum := messaging.Topology{Subscriptions: []messaging.Subscription{sub}, QueueType: messaging.QueueQuorum}
	require.NoError(t, quorum.Declare(ch, sub.Topic))

	classic := quorum
	classic.QueueType = messaging.QueueClassic
	b, err := messaging.ConnectBroker(ctx, messaging.BrokerConfig{URL: e.broker, Topology: classic}, watermill.NopLogger{})
	require.NoError(t, err)
	defer b.Close()
	msg, err := messaging.NewMarshaler().Marshal(placedEvent("o-1"))
	require.NoError(t, err)
	err = b.Publisher().Publish(sub.Topic, msg)
	require.Error(t, err)
	assert.ErrorContains(t, err, "BROKER_QUEUE_TYPE must be the same in every service")
	var amqpErr *amqp091.Error
	require.ErrorAs(t, err, &amqpErr, "RabbitMQ's own error is wrapped")
	assert.Equal(t, amqp091.PreconditionFailed, amqpErr.Code)
	assert.Equal(t, "quorum", testkit.QueueInfo(t, e.broker, sub.Queue()).Type, "the queue is left as it was")
}

func TestRouter_transient_failures_are_retried(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	var calls atomic.Int32
	done := make(chan struct{})
	e.run(t, "test", 5, cqrs.NewEventHandler("test.Flaky", func(context.Context, *events.OrderPlaced) error {
		if calls.Add(1) <= 3 {
			return errors.New("database is restarting")
		}
		close(done)
		return nil
	}))
	e.publish(t, t.Context(), placedEvent("o-flaky"))
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("handler never succeeded")
	}
	assert.Equal(t, int32(4), calls.Load())
}

func TestRouter_exhausted_retries_go_to_poison_queue_with_failure_context(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	var calls atomic.Int32
	e.run(t, "test", 2, cqrs.NewEventHandler("test.Broken", func(context.Context, *events.OrderPlaced) error {
		calls.Add(1)
		return errors.New("lock timeout")
	}))
	sent := placedEvent("o-broken")
	e.publish(t, observability.WithCorrelationID(t.Context(), "corr-p"), sent)

	d := e.nextPoisoned(t, e.channel(t), "test")
	assert.Equal(t, sent.ID, d.Headers["_watermill_message_uuid"])
	assert.Equal(t, "3", d.Headers[messaging.MetadataAttempts], "1 attempt + 2 retries")
	assert.Equal(t, int32(3), calls.Load())
	assert.Contains(t, d.Headers["reason_poisoned"], "lock timeout")
	assert.Equal(t, "test.Broken", d.Headers["handler_poisoned"])
	assert.Equal(t, messaging.EventTopic("OrderPlaced"), d.Headers["topic_poisoned"])
	assert.Equal(t, "corr-p", d.Headers["correlation_id"])
	assert.Equal(t, "OrderPlaced", d.Headers["name"])
	assert.Contains(t, d.Headers[messaging.MetadataErrorType], "transient")
	first, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d.Headers[messaging.MetadataFirstFailureAt]))
	require.NoError(t, err)
	last, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d.Headers[messaging.MetadataLastFailureAt]))
	require.NoError(t, err)
	assert.True(t, last.After(first))
	assert.JSONEq(t, mustJSON(t, sent), string(d.Body))
}

func TestRouter_undecodable_message_is_poisoned_without_retries(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	var calls atomic.Int32
	e.run(t, "test", 5, cqrs.NewEventHandler("test.Strict", func(context.Context, *events.OrderPlaced) error {
		calls.Add(1)
		return nil
	}))
	ch := e.channel(t)
	tests := []struct {
		name    string
		headers amqp091.Table
		body    string
	}{
		{"not json", amqp091.Table{"name": "OrderPlaced"}, "{not json"},
		{"invalid event", amqp091.Table{"name": "OrderPlaced"}, `{"order_id":""}`},
		{"no event name", nil, `{}`},
	}
	for _, tt := range tests {
		require.NoError(t, ch.PublishWithContext(t.Context(), messaging.EventTopic("OrderPlaced"), "", false, false,
			amqp091.Publishing{Headers: tt.headers, Body: []byte(tt.body), DeliveryMode: amqp091.Persistent}))
	}
	for range tests {
		d := e.nextPoisoned(t, ch, "test")
		assert.Equal(t, "1", d.Headers[messaging.MetadataAttempts], "no retries for %s", d.Body)
		assert.Contains(t, d.Headers[messaging.MetadataErrorType], "permanent")
	}
	assert.Zero(t, calls.Load())
}

func TestRouter_redelivered_message_is_handled(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{}, 1)
	e.run(t, "test", 0, cqrs.NewEventHandler("test.Count", func(_ context.Context, ev *events.OrderPlaced) error {
		mu.Lock()
		defer mu.Unlock()
		seen[ev.ID]++
		if seen[ev.ID] == 2 {
			done <- struct{}{}
		}
		return nil
	}))
	// The same event twice, the second time as RabbitMQ redelivers it: with
	// an integer x-delivery-count header, which Watermill's default
	// marshaler rejects.
	ev := placedEvent("o-twice")
	msg, err := messaging.NewMarshaler().Marshal(ev)
	require.NoError(t, err)
	ch := e.channel(t)
	for i := range 2 {
		h := amqp091.Table{"_watermill_message_uuid": msg.UUID}
		for k, v := range msg.Metadata {
			h[k] = v
		}
		if i == 1 {
			h["x-delivery-count"] = int64(1)
		}
		require.NoError(t, ch.PublishWithContext(t.Context(), messaging.EventTopic("OrderPlaced"), "", false, false,
			amqp091.Publishing{Headers: h, Body: msg.Payload, DeliveryMode: amqp091.Persistent}))
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("handled %v", seen)
	}
}
