package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"golang.org/x/sync/errgroup"

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

// outboxOffsets is watermill-sql's offsets adapter for the outbox: a
// forwarded row is deleted.
func outboxOffsets() wsql.PostgreSQLQueueOffsetsAdapter {
	return wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: outboxTableName}
}

// outboxSchema is watermill-sql's queue schema: rows are read in offset
// order, FOR UPDATE, and deleted once forwarded (PostgreSQLQueueOffsetsAdapter
// with DeleteOnAck). It avoids the default schema's xid8 ordering, which
// breaks after a dump and restore (watermill issue #576).
func outboxSchema(batch int) wsql.PostgreSQLQueueSchema {
	return wsql.PostgreSQLQueueSchema{GenerateMessagesTableName: outboxTableName, SubscribeBatchSize: batch}
}

// OutboxRows marshals events into outbox rows, through a CQRS event bus, for
// a statement the caller runs: the rows reach RabbitMQ only through the
// forwarder, once that statement's transaction commits. Each event gets a
// PRODUCER span "create <topic>" whose trace context is stored with it, so
// the forwarder and the consumer continue the trace.
//
// The rows are written by watermill-sql's own INSERT for the outbox schema
// (InsertQuery); OutboxRows only decides where it runs. OutboxWriter runs it
// as a statement of a transaction. With prepends it to the caller's own
// statement as a data-modifying WITH clause, so that a write and its events
// are one statement, atomic without BEGIN and COMMIT: one round trip to
// PostgreSQL instead of four. watermill-sql offers no way to combine its
// INSERT with another statement, hence this type.
type OutboxRows struct {
	buf *bufferPublisher
	bus *cqrs.EventBus
}

// NewOutboxRows returns an empty set of outbox rows.
func NewOutboxRows(log watermill.LoggerAdapter, otelOpts ...observability.Option) (*OutboxRows, error) {
	buf := &bufferPublisher{}
	bus, err := cqrs.NewEventBusWithConfig(
		observability.OutboxPublisher(forwarder.NewPublisher(buf, forwarder.PublisherConfig{ForwarderTopic: OutboxTopic}), otelOpts...),
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
	return &OutboxRows{buf: buf, bus: bus}, nil
}

// Add marshals events as ctx's (its trace and correlation id go with them).
func (r *OutboxRows) Add(ctx context.Context, events ...any) error {
	for _, e := range events {
		if err := r.bus.Publish(ctx, e); err != nil {
			return fmt.Errorf("append %T to outbox: %w", e, err)
		}
	}
	return nil
}

// Len is how many rows were added.
func (r *OutboxRows) Len() int { return len(r.buf.msgs) }

// With returns one statement that inserts the rows added so far into the
// outbox and runs stmt, and its arguments: the rows' parameters come first,
// so stmt numbers its own from first (stmt(first) uses $first, $first+1, …
// for args). Without rows it is stmt(1) alone.
//
// PostgreSQL runs a data-modifying WITH clause to completion whatever the
// main statement reads, and the statement is atomic: if stmt fails, no row
// was written.
func (r *OutboxRows) With(stmt func(first int) string, args ...any) (string, []any, error) {
	msgs := r.buf.msgs
	if len(msgs) == 0 {
		return stmt(1), args, nil
	}
	q, err := outboxSchema(0).InsertQuery(wsql.InsertQueryParams{Topic: OutboxTopic, Msgs: msgs})
	if err != nil {
		return "", nil, fmt.Errorf("outbox insert of %d events: %w", len(msgs), err)
	}
	all := make([]any, 0, len(q.Args)+len(args))
	all = append(append(all, q.Args...), args...)
	return "WITH outbox AS (" + q.Query + ")\n" + stmt(len(q.Args)+1), all, nil
}

// OutboxWriter appends events to the outbox inside a transaction. They
// reach RabbitMQ only through the forwarder, after the transaction commits;
// if it rolls back, they never existed.
//
// It writes the events of one transaction in one INSERT however many there
// are, so a transaction that carries several orders (see pkg/groupcommit)
// writes all their events in one round trip. watermill-sql's publisher
// already writes the messages of one Publish call as one multi-row INSERT;
// the CQRS event bus publishes one event per call, so the writer gathers the
// bus's messages and hands them to the SQL publisher together on Flush.
type OutboxWriter struct {
	sql  *wsql.Publisher
	rows *OutboxRows
}

// NewOutboxWriter returns a writer that appends events to the outbox inside
// tx. Nothing is written before Flush.
func NewOutboxWriter(tx *sql.Tx, log watermill.LoggerAdapter, otelOpts ...observability.Option) (*OutboxWriter, error) {
	pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema(0)}, log)
	if err != nil {
		return nil, fmt.Errorf("create outbox publisher: %w", err)
	}
	rows, err := NewOutboxRows(log, otelOpts...)
	if err != nil {
		return nil, err
	}
	return &OutboxWriter{sql: pub, rows: rows}, nil
}

// Add marshals events as ctx's (its trace and correlation id go with them)
// and keeps them for Flush.
func (w *OutboxWriter) Add(ctx context.Context, events ...any) error {
	return w.rows.Add(ctx, events...)
}

// Flush writes the events added so far to the outbox, in one statement run
// in ctx (watermill-sql would run it in the first message's context, which
// is one caller's, and may have ended while the transaction goes on for the
// others).
func (w *OutboxWriter) Flush(ctx context.Context) error {
	msgs := w.rows.buf.take()
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	if err := w.sql.Publish(OutboxTopic, msgs...); err != nil {
		return fmt.Errorf("write %d events to the outbox: %w", len(msgs), err)
	}
	return nil
}

// bufferPublisher keeps what the forwarder's envelope publisher hands it,
// for OutboxRows.With and OutboxWriter.Flush.
type bufferPublisher struct{ msgs []*message.Message }

func (b *bufferPublisher) Publish(topic string, msgs ...*message.Message) error {
	if topic != OutboxTopic {
		return fmt.Errorf("outbox buffer: unexpected topic %q", topic)
	}
	b.msgs = append(b.msgs, msgs...)
	return nil
}

func (b *bufferPublisher) take() []*message.Message {
	msgs := b.msgs
	b.msgs = nil
	return msgs
}

func (*bufferPublisher) Close() error { return nil }

// injectContext writes the correlation id of the publishing context into the
// message metadata (the trace context is written by the outbox publisher's
// span).
func injectContext(p cqrs.OnEventSendParams) error {
	if id := observability.CorrelationID(p.Message.Context()); id != "" {
		p.Message.Metadata.Set(middleware.CorrelationIDMetadataKey, id)
	}
	return nil
}

// ForwarderConfig configures the outbox forwarder.
type ForwarderConfig struct {
	// Workers is how many forwarders relay the outbox side by side, each a
	// transaction at a time.
	Workers int
	// BatchSize is how many rows one forwarding transaction locks. Its
	// messages are published together and their confirms awaited together
	// (see pipelinedPublisher), so up to Workers × BatchSize publishes are
	// in flight, as many as the publisher's channel pool lets through.
	BatchSize int
	// PollInterval is how long an idle forwarder waits before looking at the
	// outbox again. With a Waker it is only a safety net (for rows a replica
	// that died left behind).
	PollInterval time.Duration
	// Waker is signalled by the stores after they commit outbox rows (nil:
	// poll only).
	Waker *OutboxWaker
	// Linger is how long a woken forwarder gathers commits before it reads
	// the outbox (see notifyBackoff).
	Linger       time.Duration
	CloseTimeout time.Duration
}

func (c ForwarderConfig) withDefaults() ForwarderConfig {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 16
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	return c
}

// skipLockedSchema is the queue schema with SKIP LOCKED added to its row
// locks, so that forwarders (in one process or in replicas) each take a
// different batch instead of queueing behind one another's locks.
// PostgreSQLQueueSchema has no option for it.
//
// It also reads at READ COMMITTED instead of the schema's REPEATABLE READ.
// Under REPEATABLE READ, a forwarder that tries to lock a row another one
// deleted after its snapshot fails with a serialization error while it
// fetches the rows; watermill-sql does not see that error, forwards the
// rows it did get, and then fails to delete them in the aborted transaction
// (SQLSTATE 25P02): the batch is published twice and the forwarder stalls
// for its retry interval. At READ COMMITTED, FOR UPDATE SKIP LOCKED simply
// skips such rows: the usual queue-in-a-table pattern. The queue schema
// needs no snapshot beyond that (rows are deleted on ack; there are no
// offsets to keep consistent).
//
// It also counts the rows each query returned (see rowCount).
type skipLockedSchema struct {
	wsql.PostgreSQLQueueSchema
	rows     *rowCount
	waker    *OutboxWaker // told of each read (see OutboxWaker)
	inflight *inflight    // the worker's publishes (see pipelinedPublisher)
}

// UnmarshalMessage counts the rows of the current query; SelectQuery resets
// the count.
func (s skipLockedSchema) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	row, err := s.PostgreSQLQueueSchema.UnmarshalMessage(p)
	if err == nil && s.rows != nil {
		s.rows.n.Add(1)
	}
	return row, err //nolint:wrapcheck // the adapter's own error, as watermill-sql expects it
}

func (skipLockedSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelReadCommitted }

func (s skipLockedSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	if s.rows != nil {
		s.rows.n.Store(0)
	}
	if s.inflight != nil {
		// Publishes of a batch that was not deleted (its transaction
		// failed): their rows are read again, so their outcome no longer
		// matters, but they must not count against the next batch.
		_ = s.inflight.wait()
	}
	s.waker.reading() // the query runs next, in this forwarder's transaction
	q, err := s.PostgreSQLQueueSchema.SelectQuery(p)
	if err != nil {
		return q, fmt.Errorf("outbox select query: %w", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(q.Query), "FOR UPDATE") {
		return q, fmt.Errorf("outbox select query does not end in FOR UPDATE: %q", q.Query)
	}
	q.Query = strings.TrimSpace(q.Query) + " SKIP LOCKED"
	return q, nil
}

// Forwarder relays the outbox to RabbitMQ with Watermill's forwarder, in
// cfg.Workers instances. A row is deleted only after its message was
// confirmed, in the transaction that locked it: a crash between the two
// republishes it (at least once), and consumers deduplicate.
// Each worker's transactions are two round trips (see pipelinedBeginner).
type Forwarder struct {
	fwds []*forwarder.Forwarder
	stop chan struct{}
}

// NewForwarder returns the outbox forwarder from db to pub.
func NewForwarder(db *sql.DB, pub message.Publisher, cfg ForwarderConfig, log watermill.LoggerAdapter) (*Forwarder, error) {
	cfg = cfg.withDefaults()
	f := &Forwarder{stop: make(chan struct{})}
	for range cfg.Workers {
		rows, pending := &rowCount{}, &inflight{closing: f.stop}
		backoff := notifyBackoff{
			waker: cfg.Waker, wake: cfg.Waker.wakeups(), fallback: cfg.PollInterval, retry: time.Second, linger: cfg.Linger, closing: f.stop,
			rows: rows, batch: cfg.BatchSize,
		}
		sub, err := wsql.NewSubscriber(newPipelinedBeginner(db), wsql.SubscriberConfig{
			SchemaAdapter: skipLockedSchema{
				PostgreSQLQueueSchema: outboxSchema(cfg.BatchSize), rows: rows, waker: cfg.Waker, inflight: pending,
			},
			OffsetsAdapter: confirmingOffsets{
				PostgreSQLQueueOffsetsAdapter: outboxOffsets(),
				inflight:                      pending,
			},
			PollInterval:   cfg.PollInterval,
			ResendInterval: 100 * time.Millisecond,
			RetryInterval:  time.Second,
			BackoffManager: backoff,
		}, log)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create outbox subscriber: %w", err), f.Close())
		}
		fwd, err := forwarder.NewForwarder(sub, pipelinedPublisher{pub: pub, inflight: pending}, log, forwarder.Config{
			ForwarderTopic: OutboxTopic,
			CloseTimeout:   cfg.CloseTimeout,
			// An outbox row that is not an envelope was not written by
			// an OutboxWriter. Nacking keeps it (nothing is lost) and the
			// forwarder logs it on every attempt.
			AckWhenCannotUnwrap: false,
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create forwarder: %w", err), sub.Close(), f.Close())
		}
		f.fwds = append(f.fwds, fwd)
	}
	return f, nil
}

// Run runs every forwarder until ctx ends or one of them stops.
func (f *Forwarder) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, fwd := range f.fwds {
		g.Go(func() error { return fwd.Run(gctx) })
	}
	return g.Wait()
}

// Running is closed once every forwarder runs.
func (f *Forwarder) Running() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for _, fwd := range f.fwds {
			<-fwd.Running()
		}
	}()
	return ch
}

// Close stops the forwarders.
func (f *Forwarder) Close() error {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	var errs []error
	for _, fwd := range f.fwds {
		errs = append(errs, fwd.Close())
	}
	return errors.Join(errs...)
}

// Outbox appends events to a service's outbox.
type Outbox struct {
	Log  watermill.LoggerAdapter
	Otel []observability.Option
	// Waker wakes a forwarder once the transaction has committed; see
	// Committed.
	Waker *OutboxWaker
}

// Committed tells the forwarders that a transaction that appended events
// has committed.
func (o Outbox) Committed() { o.Waker.Committed() }

// Writer returns a writer of this outbox for tx, for a transaction that
// appends the events of several calls (see OutboxWriter).
func (o Outbox) Writer(tx *sql.Tx) (*OutboxWriter, error) {
	return NewOutboxWriter(tx, o.Log, o.Otel...)
}

// Rows returns an empty set of rows of this outbox, for a statement that
// writes them with the caller's own (see OutboxRows.With).
func (o Outbox) Rows() (*OutboxRows, error) { return NewOutboxRows(o.Log, o.Otel...) }

// PublishInTx appends events to the outbox inside tx, in one INSERT.
func PublishInTx(ctx context.Context, tx *sql.Tx, log watermill.LoggerAdapter, events []any, otelOpts ...observability.Option) error {
	if len(events) == 0 {
		return nil
	}
	w, err := NewOutboxWriter(tx, log, otelOpts...)
	if err != nil {
		return err
	}
	if err := w.Add(ctx, events...); err != nil {
		return err
	}
	return w.Flush(ctx)
}
