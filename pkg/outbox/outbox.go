// Package outbox is the transactional outbox: a service appends its events
// to an outbox table in the transaction of the write they describe (Outbox),
// and the Forwarder relays them to RabbitMQ once that transaction has
// committed, deleting each row after its publish was confirmed.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
)

// Topic is the forwarder topic: every event a service publishes is
// enveloped and appended to one outbox table, Table.
const Topic = "outbox"

// Table is the outbox table's (quoted) name. Each service creates it in
// its own migrations (see TableDDL) rather than letting watermill-sql
// create it, so that the schema is versioned with the service and the offset
// column is 64-bit.
const Table = `"watermill_outbox"`

// TableDDL creates the outbox table in the layout watermill-sql's
// PostgreSQLQueueSchema reads and writes.
const TableDDL = `CREATE TABLE IF NOT EXISTS ` + Table + ` (
	"offset" BIGSERIAL PRIMARY KEY,
	"uuid" VARCHAR(36) NOT NULL,
	"payload" JSON DEFAULT NULL,
	"metadata" JSON DEFAULT NULL,
	"acked" BOOLEAN NOT NULL DEFAULT FALSE,
	"created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
)`

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
	log  watermill.LoggerAdapter
	otel []observability.Option
}

// New returns the outbox of a service. Each appended event gets a
// PRODUCER span "create <topic>" whose trace context is stored with it, so
// the forwarder and the consumer continue the trace.
func New(log watermill.LoggerAdapter, otel ...observability.Option) *Outbox {
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
	msgs, _, err := o.envelopes(pending)
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

// InsertWithEvents runs insert, an INSERT … RETURNING "id" of rows, and
// appends the events of pending[i] if it inserted the row whose id is
// owners[i], all in one statement: one round trip and one commit, with no
// transaction block around them. It returns the ids inserted. This is group
// commit's write (see pkg/groupcommit), where a batch of writes would
// otherwise wait for BEGIN, two INSERTs and COMMIT one after another; the
// rows it writes to the outbox are the ones AppendAll writes.
func (o *Outbox) InsertWithEvents(ctx context.Context, db bun.IDB, insert *bun.InsertQuery, owners []string, pending []Pending) ([]string, error) {
	msgs, from, err := o.envelopes(pending)
	if err != nil {
		return nil, err
	}
	owner, uuids, payloads, metadata := make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs))
	for i, m := range msgs {
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return nil, fmt.Errorf("marshal the metadata of event %s: %w", m.UUID, err)
		}
		owner[i], uuids[i], payloads[i], metadata[i] = owners[from[i]], m.UUID, string(m.Payload), string(md)
	}
	var inserted []string
	err = db.NewRaw(insertWithEvents, insert, bun.Safe(Table),
		pgdialect.Array(owner), pgdialect.Array(uuids), pgdialect.Array(payloads), pgdialect.Array(metadata)).
		Scan(ctx, &inserted)
	if err != nil {
		return nil, fmt.Errorf("insert %d rows with %d events: %w", len(owners), len(msgs), err)
	}
	return inserted, nil
}

// insertWithEventsHead begins InsertWithEvents' statement, which commits by
// itself: the Waker wakes the forwarder after it as after a COMMIT.
const insertWithEventsHead = "WITH ins AS ("

// insertWithEvents keeps the events in their callers' order, so that the
// outbox's offsets are too.
const insertWithEvents = insertWithEventsHead + `?), events AS (
	INSERT INTO ? (uuid, payload, metadata)
	SELECT e.uuid, e.payload, e.metadata
	FROM unnest(?::text[], ?::text[], ?::json[], ?::json[]) WITH ORDINALITY AS e(owner, uuid, payload, metadata, n)
	WHERE e.owner IN (SELECT id::text FROM ins)
	ORDER BY e.n
)
SELECT id FROM ins`

// envelopes turns pending's events into the forwarder's enveloped messages,
// each in its caller's context; from[i] is the index in pending of msgs[i].
func (o *Outbox) envelopes(pending []Pending) (msgs []*message.Message, from []int, err error) {
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
	for i, p := range pending {
		for _, e := range p.Events {
			if err := bus.Publish(p.Ctx, e); err != nil {
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
	// caller's, which may end while the transaction goes on for the others.
	ctx := context.WithoutCancel(pending[0].Ctx)
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
