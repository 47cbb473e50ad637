package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

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

// outboxSchema is watermill-sql's queue schema: rows are read in offset
// order, FOR UPDATE, and deleted once forwarded (PostgreSQLQueueOffsetsAdapter
// with DeleteOnAck). It avoids the default schema's xid8 ordering, which
// breaks after a dump and restore (watermill issue #576).
func outboxSchema(batch int) wsql.PostgreSQLQueueSchema {
	return wsql.PostgreSQLQueueSchema{GenerateMessagesTableName: outboxTableName, SubscribeBatchSize: batch}
}

// NewOutboxEventBus returns a CQRS event bus that appends events to the
// outbox inside tx. They reach RabbitMQ only through the forwarder, after tx
// commits; if tx rolls back, they never existed.
func NewOutboxEventBus(tx *sql.Tx, log watermill.LoggerAdapter) (*cqrs.EventBus, error) {
	pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema(0)}, log)
	if err != nil {
		return nil, fmt.Errorf("create outbox publisher: %w", err)
	}
	bus, err := cqrs.NewEventBusWithConfig(
		forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: OutboxTopic}),
		cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
				return EventTopic(p.EventName), nil
			},
			OnPublish: injectContext,
			Marshaler: NewMarshaler(),
			Logger:    log,
		},
	)
	if err != nil {
		return nil, fmt.Errorf("create outbox event bus: %w", err)
	}
	return bus, nil
}

// injectContext writes the correlation id and the W3C trace context of the
// publishing context into the message metadata.
func injectContext(p cqrs.OnEventSendParams) error {
	ctx := p.Message.Context()
	if id := observability.CorrelationID(ctx); id != "" {
		p.Message.Metadata.Set(middleware.CorrelationIDMetadataKey, id)
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(p.Message.Metadata))
	return nil
}

// ForwarderConfig configures the outbox forwarder.
type ForwarderConfig struct {
	// PollInterval is how long the forwarder waits after finding the outbox
	// empty. watermill-sql's default is 1 s.
	PollInterval time.Duration
	// BatchSize is how many rows one forwarding transaction reads.
	BatchSize    int
	CloseTimeout time.Duration
}

// NewForwarder returns Watermill's forwarder relaying outbox rows from db to
// pub (RabbitMQ, with publisher confirms). A row is deleted only after its
// message was confirmed, in the transaction that locked it: a crash between
// the two republishes it (at least once), and consumers deduplicate.
// Several instances may forward the same outbox: the rows are locked FOR
// UPDATE, so one instance forwards a batch while the other waits.
func NewForwarder(db *sql.DB, pub message.Publisher, cfg ForwarderConfig, log watermill.LoggerAdapter) (*forwarder.Forwarder, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter:  outboxSchema(cfg.BatchSize),
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: outboxTableName},
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.PollInterval,
		RetryInterval:  time.Second,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("create outbox subscriber: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sub, pub, log, forwarder.Config{
		ForwarderTopic: OutboxTopic,
		CloseTimeout:   cfg.CloseTimeout,
		// An outbox row that is not an envelope was not written by
		// NewOutboxEventBus. Nacking keeps it (nothing is lost) and the
		// forwarder logs it on every attempt.
		AckWhenCannotUnwrap: false,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create forwarder: %w", err), sub.Close())
	}
	return fwd, nil
}

// PublishInTx appends events to the outbox inside tx, through the outbox
// event bus.
func PublishInTx(ctx context.Context, tx *sql.Tx, log watermill.LoggerAdapter, events ...any) error {
	if len(events) == 0 {
		return nil
	}
	bus, err := NewOutboxEventBus(tx, log)
	if err != nil {
		return err
	}
	for _, e := range events {
		if err := bus.Publish(ctx, e); err != nil {
			return fmt.Errorf("append %T to outbox: %w", e, err)
		}
	}
	return nil
}
