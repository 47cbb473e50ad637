// Package outbox is the transactional outbox: a service appends its events
// to an outbox table in the transaction of the write they describe (Outbox),
// and the Forwarder relays them to RabbitMQ once that transaction has
// committed, deleting each row after its publish was confirmed.
package outbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
)

// Topic is the forwarder topic: every event a service publishes is
// enveloped and appended to one outbox table, Table.
const Topic = "outbox"

// Table is the outbox table's (quoted) name. Services create it with their
// own migrations (Migrations) rather than letting watermill-sql create it,
// so that the schema is versioned with them and the offset column is 64-bit.
const Table = `"watermill_outbox"`

//go:embed migrations/*.sql
var migrations embed.FS

// TableDDL creates the outbox table in the layout watermill-sql's
// PostgreSQLQueueSchema reads and writes: the migration's statement.
//
//go:embed migrations/20251101000002_create_outbox.up.sql
var TableDDL string

// Migrations is the outbox table's migration, for a service to apply with
// its own (database.Migrate).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists at compile time
	}
	return sub
}

func outboxTableName(string) string { return Table }

// outboxSchema is watermill-sql's queue schema on the outbox table: rows are
// read in offset order and deleted once forwarded. It avoids the default
// schema's xid8 ordering, which breaks after a dump and restore (watermill
// issue #576).
func outboxSchema(batch int) wsql.PostgreSQLQueueSchema {
	return wsql.PostgreSQLQueueSchema{GenerateMessagesTableName: outboxTableName, SubscribeBatchSize: batch}
}

// Outbox appends a service's events to its outbox table inside the caller's
// transaction, as Watermill's transactional-events example does: a CQRS
// event bus over the forwarder's enveloping publisher, whose messages
// watermill-sql's publisher writes on the transaction. The events reach RabbitMQ only through the
// Forwarder, once the transaction has committed; if it rolls back, they
// never existed.
type Outbox struct {
	log   watermill.LoggerAdapter
	otel  []observability.Option
	waker *Waker
}

// New returns the outbox of a service. Each appended event gets a
// PRODUCER span "create <topic>" whose trace context is stored with it, so
// the forwarder and the consumer continue the trace.
func New(log watermill.LoggerAdapter, otel ...observability.Option) *Outbox {
	if log == nil {
		log = watermill.NopLogger{}
	}
	return &Outbox{log: log, otel: otel, waker: NewWaker()}
}

// Waker is the outbox's waker: add it to the service's database (bun's
// WithQueryHook) and give it to the Forwarder, so that a commit that may
// have appended events wakes an idle forwarder.
func (o *Outbox) Waker() *Waker { return o.waker }

// Append writes events to the outbox in tx, in one INSERT (watermill-sql
// writes the messages of one Publish call as one multi-row INSERT; the CQRS
// event bus publishes an event per call, so its messages are gathered
// first). Each event carries ctx's trace and correlation id.
func (o *Outbox) Append(ctx context.Context, tx bun.Tx, events ...any) error {
	msgs, _, err := o.envelopes([]Write{{Ctx: ctx, Events: events}})
	if err != nil || len(msgs) == 0 {
		return err
	}
	sqlPub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx.Tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema(0)}, o.log)
	if err != nil {
		return fmt.Errorf("create outbox publisher: %w", err)
	}
	if err := sqlPub.Publish(Topic, msgs...); err != nil {
		return fmt.Errorf("write %d events to the outbox: %w", len(msgs), err)
	}
	return nil
}

// envelopes turns the writes' events into the forwarder's enveloped
// messages, each in its write's context; from[i] is the index in writes of
// msgs[i].
func (o *Outbox) envelopes(writes []Write) (msgs []*message.Message, from []int, err error) {
	buf := &bufferPublisher{}
	bus, err := cqrs.NewEventBusWithConfig(
		observability.OutboxPublisher(forwarder.NewPublisher(buf, forwarder.PublisherConfig{ForwarderTopic: Topic}), o.otel...),
		cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
				return messaging.EventTopic(p.EventName), nil
			},
			OnPublish: injectCorrelationID,
			Marshaler: messaging.NewMarshaler(),
			Logger:    o.log,
		})
	if err != nil {
		return nil, nil, fmt.Errorf("create outbox event bus: %w", err)
	}
	for i, w := range writes {
		for _, e := range w.Events {
			if err := bus.Publish(w.Ctx, e); err != nil {
				return nil, nil, fmt.Errorf("append %T to the outbox: %w", e, err)
			}
		}
		for len(from) < len(buf.msgs) {
			from = append(from, i)
		}
	}
	if len(buf.msgs) == 0 {
		return nil, nil, nil
	}
	// watermill-sql runs the INSERT in the first message's context, one
	// caller's, which may end while the statement goes on for the others.
	ctx := context.WithoutCancel(writes[0].Ctx)
	for _, m := range buf.msgs {
		m.SetContext(ctx)
	}
	return buf.msgs, from, nil
}

// bufferPublisher keeps what the forwarder's envelope publisher hands it.
type bufferPublisher struct{ msgs []*message.Message }

func (b *bufferPublisher) Publish(_ string, msgs ...*message.Message) error {
	b.msgs = append(b.msgs, msgs...)
	return nil
}

func (*bufferPublisher) Close() error { return nil }

// injectCorrelationID writes the correlation id of the publishing context
// into the message metadata (the trace context is written by the outbox
// publisher's span).
func injectCorrelationID(p cqrs.OnEventSendParams) error {
	if id := observability.CorrelationID(p.Message.Context()); id != "" {
		p.Message.Metadata.Set(middleware.CorrelationIDMetadataKey, id)
	}
	return nil
}
