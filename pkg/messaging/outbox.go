package messaging

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/observability"
)

// OutboxTopic is the forwarder topic: every event a service publishes is
// enveloped and appended to one outbox table, OutboxTable.
const OutboxTopic = "outbox"

// OutboxTable is the outbox table's (quoted) name. Each service creates it in
// its own migrations (see OutboxTableDDL) rather than letting watermill-sql
// create it, so that the schema is versioned with the service and the offset
// column is 64-bit.
const OutboxTable = `"watermill_outbox"`

// OutboxTableDDL creates the outbox table in the layout watermill-sql's
// PostgreSQLQueueSchema reads and writes.
const OutboxTableDDL = `CREATE TABLE IF NOT EXISTS ` + OutboxTable + ` (
	"offset" BIGSERIAL PRIMARY KEY,
	"uuid" VARCHAR(36) NOT NULL,
	"payload" JSON DEFAULT NULL,
	"metadata" JSON DEFAULT NULL,
	"acked" BOOLEAN NOT NULL DEFAULT FALSE,
	"created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
)`

func outboxTableName(string) string { return OutboxTable }

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
	log  watermill.LoggerAdapter
	otel []observability.Option
}

// NewOutbox returns the outbox of a service. Each appended event gets a
// PRODUCER span "create <topic>" whose trace context is stored with it, so
// the forwarder and the consumer continue the trace.
func NewOutbox(log watermill.LoggerAdapter, otel ...observability.Option) *Outbox {
	if log == nil {
		log = watermill.NopLogger{}
	}
	return &Outbox{log: log, otel: otel}
}

// Append writes events to the outbox in tx. Each event carries ctx's trace
// and correlation id.
func (o *Outbox) Append(ctx context.Context, tx bun.Tx, events ...any) error {
	return o.AppendAll(tx, Pending{Ctx: ctx, Events: events})
}

// Pending is what one caller appends: its events, as its context's.
type Pending struct {
	Ctx    context.Context
	Events []any
}

// AppendAll writes the events of several callers in tx, in one INSERT
// (watermill-sql writes the messages of one Publish call as one multi-row
// INSERT; the CQRS event bus publishes an event per call, so its messages
// are gathered first). A transaction shared by many writes (see
// pkg/groupcommit) appends all their events in one round trip.
func (o *Outbox) AppendAll(tx bun.Tx, pending ...Pending) error {
	buf := &bufferPublisher{}
	bus, err := cqrs.NewEventBusWithConfig(
		observability.OutboxPublisher(forwarder.NewPublisher(buf, forwarder.PublisherConfig{ForwarderTopic: OutboxTopic}), o.otel...),
		cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
				return EventTopic(p.EventName), nil
			},
			OnPublish: injectCorrelationID,
			Marshaler: NewMarshaler(),
			Logger:    o.log,
		})
	if err != nil {
		return fmt.Errorf("create outbox event bus: %w", err)
	}
	for _, p := range pending {
		for _, e := range p.Events {
			if err := bus.Publish(p.Ctx, e); err != nil {
				return fmt.Errorf("append %T to the outbox: %w", e, err)
			}
		}
	}
	if len(buf.msgs) == 0 {
		return nil
	}
	// watermill-sql runs the INSERT in the first message's context, one
	// caller's, which may end while the transaction goes on for the others.
	ctx := context.WithoutCancel(pending[0].Ctx)
	for _, m := range buf.msgs {
		m.SetContext(ctx)
	}
	sqlPub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx.Tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema(0)}, o.log)
	if err != nil {
		return fmt.Errorf("create outbox publisher: %w", err)
	}
	if err := sqlPub.Publish(OutboxTopic, buf.msgs...); err != nil {
		return fmt.Errorf("write %d events to the outbox: %w", len(buf.msgs), err)
	}
	return nil
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
