package events_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// These tests publish events the way the services do, through the outbox
// and the forwarder of pkg/messaging, into a fresh vhost, and hold what
// RabbitMQ delivers against the document.

// wire is one test's outbox database, vhost and telemetry.
type wire struct {
	db     *bun.DB
	broker string
	otel   []observability.Option
}

func newWire(t *testing.T) wire {
	t.Helper()
	sqldb, err := sql.Open("pgx", testkit.NewDatabase(t))
	require.NoError(t, err)
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { _ = db.Close() })
	_, err = db.ExecContext(t.Context(), outbox.TableDDL)
	require.NoError(t, err)
	// The services' telemetry, exporting nothing: W3C trace context and
	// baggage propagation, a recording tracer.
	env := map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
	tel, err := observability.New(t.Context(), "orders", "test", func(k string) string { return env[k] })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return wire{db: db, broker: testkit.NewVhost(t), otel: tel.Options()}
}

// forward runs the outbox forwarder to RabbitMQ until the test ends.
func (w wire) forward(t *testing.T) {
	t.Helper()
	b, err := messaging.ConnectBroker(t.Context(), messaging.BrokerConfig{URL: w.broker, Topology: systemTopology()}, watermill.NopLogger{})
	require.NoError(t, err)
	fwd, err := outbox.NewForwarder(w.db.DB, observability.ForwarderPublisher(b.Publisher(), w.otel...),
		outbox.ForwarderConfig{Workers: 1, PollInterval: 10 * time.Millisecond}, watermill.NopLogger{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, fwd.Close())
		if err := <-done; err != nil {
			t.Logf("forwarder stopped: %v", err)
		}
		require.NoError(t, b.Close())
	})
}

// run runs a service's router with its handlers (and its forwarder) until
// the test ends.
func (w wire) run(t *testing.T, service string, handlers ...cqrs.EventHandler) {
	t.Helper()
	rt := &platform.Runtime{
		Broker: messaging.BrokerConfig{URL: w.broker, Topology: systemTopology()},
		Router: messaging.RouterConfig{
			Service: service, MaxRetries: 1, RetryInitial: 5 * time.Millisecond, RetryMax: 10 * time.Millisecond,
			HandlerTimeout: 5 * time.Second, CloseTimeout: 5 * time.Second, Otel: w.otel,
		},
		Forwarder: outbox.ForwarderConfig{Workers: 1, PollInterval: 10 * time.Millisecond},
		Outbox:    w.db.DB,
		Register:  func(p *messaging.EventProcessor) error { return p.AddHandlers(handlers...) },
		Log:       watermill.NopLogger{},
	}
	testkit.StartRuntime(t, rt)
}

// publish appends events to the outbox in one committed transaction, as
// ctx's (its trace and correlation id go with them).
func (w wire) publish(t *testing.T, ctx context.Context, evs ...any) {
	t.Helper()
	outbox := outbox.New(watermill.NopLogger{}, w.otel...)
	require.NoError(t, w.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return outbox.Append(ctx, tx, evs...)
	}))
}

// next waits for the next message in queue and acks it. Each attempt
// dials anew: RabbitMQ closes the channel that asks for a queue that does
// not exist yet, and reopening channels on one connection while the broker
// closes them can make it close the connection.
func next(t *testing.T, broker, queue string) amqp091.Delivery {
	t.Helper()
	var got amqp091.Delivery
	testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		conn, err := amqp091.Dial(broker)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			return fmt.Errorf("get from %s: %w", queue, err)
		}
		if !ok {
			return fmt.Errorf("%s is empty", queue)
		}
		got = d
		return d.Ack(false)
	})
	return got
}

// flowContext is a publishing context as a request handler has it: a
// correlation id and a remote parent span whose trace has vendor state.
func flowContext(t *testing.T) (context.Context, trace.SpanContext) {
	t.Helper()
	ts, err := trace.ParseTraceState("vendor=abc")
	require.NoError(t, err)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(uuid.New()), SpanID: trace.SpanID([]byte("orderflw")), TraceFlags: trace.FlagsSampled,
		TraceState: ts, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(t.Context(), parent)
	return observability.WithCorrelationID(ctx, "corr-"+uuid.NewString()), parent
}

// operationBinding returns the AMQP binding of the operation that sends
// message on its exchange.
func (d document) sendBinding(tb testing.TB, message string) map[string]any {
	tb.Helper()
	for id, op := range d.object(tb, "/operations") {
		op := op.(map[string]any)
		ref, _ := op["channel"].(map[string]any)["$ref"].(string)
		ch := d.object(tb, strings.TrimPrefix(ref, "#"))
		if op["action"] != "send" {
			continue
		}
		if _, ok := ch["messages"].(map[string]any)[message]; ok {
			return d.object(tb, "/operations/"+id+"/bindings/amqp")
		}
	}
	tb.Fatalf("no operation sends %s", message)
	return nil
}

// checkDelivery holds a delivery against the message's headers and payload
// schemas and the AMQP properties the document states.
func checkDelivery(t *testing.T, doc document, message string, d amqp091.Delivery) map[string]any {
	t.Helper()
	p := "/components/messages/" + message
	headers := toJSON(t, map[string]any(d.Headers))
	assert.NoError(t, doc.schema(t, p+"/headers").Validate(headers), "headers of %s: %v", message, d.Headers)
	var body any
	if json.Valid(d.Body) {
		body = toJSON(t, json.RawMessage(d.Body))
	}
	if _, ok := doc.object(t, p)["payload"].(map[string]any)["$ref"]; ok {
		require.NotNil(t, body, "the body of %s is not JSON: %s", message, d.Body)
		assert.NoError(t, doc.schema(t, p+"/payload").Validate(body), "payload of %s: %s", message, d.Body)
	}
	assert.Equal(t, doc.at(t, "/defaultContentType"), d.ContentType, "content_type")
	assert.False(t, d.Timestamp.IsZero(), "timestamp")
	return headers.(map[string]any)
}

func TestAsyncAPI_events_on_the_wire_match_the_document(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	doc := loadDocument(t)
	w := newWire(t)
	w.forward(t)
	ctx, parent := flowContext(t)

	sent := samples()
	w.publish(t, ctx, sent["OrderPlaced"], sent["InvoiceIssued"])

	for _, name := range eventNames {
		queues := doc.queuesCarrying(t, name)
		require.NotEmpty(t, queues, name)
		for _, q := range queues {
			t.Run(name+" in "+q.address, func(t *testing.T) {
				t.Parallel()
				d := next(t, w.broker, q.address)
				headers := checkDelivery(t, doc, name, d)

				id := sent[name].(interface{ EventID() string }).EventID()
				assert.Equal(t, id, d.MessageId, "message_id is the event_id")
				assert.Equal(t, id, headers["_watermill_message_uuid"])
				assert.Equal(t, name, headers["name"])
				assert.Equal(t, observability.CorrelationID(ctx), headers["correlation_id"], "correlation_id")
				tp, _ := headers["traceparent"].(string)
				assert.Contains(t, tp, parent.TraceID().String(), "traceparent continues the publisher's trace")
				assert.Equal(t, "vendor=abc", headers["tracestate"])

				var got map[string]any
				require.NoError(t, json.Unmarshal(d.Body, &got))
				assert.Equal(t, id, got["event_id"])
				assert.Equal(t, got["occurred_at"], headers["occurred_at"], "occurred_at header is the payload's")

				binding := doc.sendBinding(t, name)
				assert.EqualValues(t, fmt.Sprint(binding["deliveryMode"]), fmt.Sprint(d.DeliveryMode), "delivery_mode")
				assert.Empty(t, d.RoutingKey, "fanout: the routing key is empty")
				assert.Equal(t, "events."+name, d.Exchange)
			})
		}
	}
}

// A message a handler gives up on reaches the service's poison queue with
// the headers the document lists, whichever way it got there: published by
// the router after the handler failed, or dead-lettered by RabbitMQ past
// the queue's delivery limit.
func TestAsyncAPI_poison_messages_match_the_document(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	doc := loadDocument(t)
	invalid := samples()
	invalid["OrderPlaced"].(*events.OrderPlaced).Amount = 0
	invalid["InvoiceIssued"].(*events.InvoiceIssued).Amount = 0
	cases := []struct {
		service, handler, event string
		handle                  cqrs.EventHandler
	}{
		{
			service: "invoices", handler: handlerOf(t, "invoices"), event: "OrderPlaced",
			handle: cqrs.NewEventHandler(handlerOf(t, "invoices"), func(context.Context, *events.OrderPlaced) error {
				return errors.New("an invalid event reached the handler")
			}),
		},
		{
			service: "orders", handler: handlerOf(t, "orders"), event: "InvoiceIssued",
			handle: cqrs.NewEventHandler(handlerOf(t, "orders"), func(context.Context, *events.InvoiceIssued) error {
				return errors.New("an invalid event reached the handler")
			}),
		},
	}
	for _, tt := range cases {
		t.Run("poisoned by "+tt.service, func(t *testing.T) {
			t.Parallel()
			w := newWire(t)
			w.run(t, tt.service, tt.handle)
			ctx, _ := flowContext(t)
			w.publish(t, ctx, invalid[tt.event])

			d := next(t, w.broker, messaging.PoisonQueue(tt.service))
			headers := checkDelivery(t, doc, "PoisonedMessage", d)
			assert.Equal(t, tt.handler, headers["handler_poisoned"])
			assert.Equal(t, messaging.EventTopic(tt.event), headers["topic_poisoned"])
			assert.Equal(t, tt.service, headers["service_poisoned"])
			assert.Equal(t, tt.event, headers["name"], "the original headers are kept")
			assert.NoError(t, doc.schema(t, "/components/schemas/EventHeaders").Validate(any(headers)), "the original headers are event headers")
			assert.Contains(t, channelsCarrying(t, doc, "PoisonedMessage"), messaging.PoisonQueue(tt.service))
		})

		t.Run("dead-lettered from "+tt.service+"'s queue", func(t *testing.T) {
			t.Parallel()
			w := newWire(t)
			w.forward(t)
			ctx, _ := flowContext(t)
			w.publish(t, ctx, samples()[tt.event])
			queue := messaging.EventTopic(tt.event) + "_" + tt.handler
			next(t, w.broker, queue) // the queue exists, the forwarder runs
			w.publish(t, ctx, samples()[tt.event])
			ch := testkit.Channel(t, w.broker)
			// A consumer that fails on the message every time: RabbitMQ
			// redelivers it up to the delivery limit, then dead-letters it.
			testkit.Eventually(t, 30*time.Second, 5*time.Millisecond, func() error {
				if q, err := ch.QueueDeclarePassive(messaging.PoisonQueue(tt.service), true, false, false, false, nil); err == nil && q.Messages > 0 {
					return nil
				}
				d, ok, err := ch.Get(queue, false)
				if err != nil {
					return fmt.Errorf("get from %s: %w", queue, err)
				}
				if ok {
					if err := d.Nack(false, true); err != nil {
						return fmt.Errorf("nack: %w", err)
					}
				}
				return fmt.Errorf("%s: nothing dead-lettered yet", queue)
			})
			d := next(t, w.broker, messaging.PoisonQueue(tt.service))
			headers := checkDelivery(t, doc, "DeadLetteredMessage", d)
			assert.Equal(t, queue, headers["x-first-death-queue"])
			assert.Equal(t, "delivery_limit", headers["x-first-death-reason"])
			assert.NotContains(t, headers, "reason_poisoned")
		})
	}
}

// channelsCarrying returns the addresses of the channels that carry message.
func channelsCarrying(tb testing.TB, doc document, message string) []string {
	tb.Helper()
	var out []string
	for _, ch := range doc.channels(tb) {
		for _, m := range ch.messages {
			if m == message {
				out = append(out, ch.address)
			}
		}
	}
	return out
}
