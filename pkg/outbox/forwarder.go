package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/messaging"
)

// ForwarderConfig configures the outbox forwarder.
type ForwarderConfig struct {
	// Workers is how many forwarders relay the outbox side by side, each a
	// transaction at a time (default 1).
	Workers int
	// BatchSize is how many rows one forwarding transaction reads (default 16).
	BatchSize int
	// PollInterval is how long an idle forwarder waits before it reads the
	// outbox again (default 1s). With a Waker it is only a safety net.
	PollInterval time.Duration
	// Waker wakes an idle forwarder when the service commits (nil: poll only).
	Waker *Waker
	// Pipeline publishes a batch's rows without waiting for each confirm
	// (see pipeline.go).
	Pipeline     bool
	CloseTimeout time.Duration
}

func (c ForwarderConfig) withDefaults() ForwarderConfig {
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 16
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	return c
}

// Forwarder relays the outbox to RabbitMQ with Watermill's forwarder, reading
// the outbox through watermill-sql's subscriber. A row is deleted only after
// its message was confirmed, in the transaction that read it: a crash
// between the two publishes it again (at least once), and consumers
// deduplicate.
type Forwarder struct {
	fwds []*forwarder.Forwarder
	stop chan struct{} // closed by Close: ends an idle worker's wait
}

// NewForwarder returns the forwarder of db's outbox to pub.
func NewForwarder(db *sql.DB, pub message.Publisher, cfg ForwarderConfig, log watermill.LoggerAdapter) (*Forwarder, error) {
	cfg = cfg.withDefaults()
	f := &Forwarder{stop: make(chan struct{})}
	for range cfg.Workers {
		drained := new(atomic.Bool)
		schema := skipLockedSchema{outboxSchema(cfg.BatchSize)}
		offsets := newForwardedOffsets(cfg.BatchSize, drained)
		w := worker{schema: schema, offsets: offsets, pub: pub}
		if cfg.Pipeline {
			w = pipelined(schema, offsets, pub, f.stop)
		}
		sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
			SchemaAdapter:  w.schema,
			OffsetsAdapter: w.offsets,
			PollInterval:   cfg.PollInterval,
			ResendInterval: 100 * time.Millisecond,
			RetryInterval:  time.Second,
			BackoffManager: wakeBackoff{wake: cfg.Waker.channel(), stop: f.stop, drained: drained, poll: cfg.PollInterval, retry: time.Second},
		}, log)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create outbox subscriber: %w", err), f.Close())
		}
		fwd, err := forwarder.NewForwarder(sub, w.pub, log, forwarder.Config{
			ForwarderTopic: Topic,
			CloseTimeout:   cfg.CloseTimeout,
			// A row that is not an envelope was not written by Outbox:
			// nacking keeps it (nothing is lost) and logs it each time.
			AckWhenCannotUnwrap: false,
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create forwarder: %w", err), sub.Close(), f.Close())
		}
		f.fwds = append(f.fwds, fwd)
	}
	return f, nil
}

// worker is what one forwarder worker reads, deletes and publishes with:
// the plain adapters, or the pipelined ones (pipeline.go).
type worker struct {
	schema  wsql.SchemaAdapter
	offsets wsql.OffsetsAdapter
	pub     message.Publisher
}

// Run runs every worker until ctx ends or one of them stops.
func (f *Forwarder) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, fwd := range f.fwds {
		g.Go(func() error { return fwd.Run(ctx) })
	}
	return g.Wait()
}

// Running is closed once every worker runs.
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

// Close stops the workers.
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

// skipLockedSchema is the queue schema with SKIP LOCKED added to its row
// lock, read at READ COMMITTED instead of the schema's REPEATABLE READ, so
// that forwarders (in one process or in replicas) each take a different
// batch. Under REPEATABLE READ, locking a row another forwarder deleted
// after the snapshot fails with a serialization error that watermill-sql
// does not see: it forwards the rows it got, fails to delete them in the
// aborted transaction, and so publishes the batch twice and stalls.
// PostgreSQLQueueSchema has no option for either.
type skipLockedSchema struct{ wsql.PostgreSQLQueueSchema }

func (skipLockedSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelReadCommitted }

func (s skipLockedSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	q, err := s.PostgreSQLQueueSchema.SelectQuery(p)
	if err != nil {
		return q, fmt.Errorf("outbox select query: %w", err)
	}
	query := strings.TrimSpace(q.Query)
	if !strings.HasSuffix(query, "FOR UPDATE") {
		return q, fmt.Errorf("outbox select query does not end in FOR UPDATE: %q", q.Query)
	}
	q.Query = query + " SKIP LOCKED"
	return q, nil
}

// forwardedOffsets deletes only the rows up to the last one forwarded.
// watermill-sql stops a batch early when the subscriber closes while a row
// is being handed over, yet passes every row of the batch to the offsets
// adapter, whose DELETE would drop rows that were never published. It also
// notes whether the batch was short (drained): the worker then waits for a
// commit rather than reading an outbox it has just emptied.
type forwardedOffsets struct {
	wsql.PostgreSQLQueueOffsetsAdapter
	batch   int
	drained *atomic.Bool
}

func newForwardedOffsets(batch int, drained *atomic.Bool) forwardedOffsets {
	return forwardedOffsets{
		PostgreSQLQueueOffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: outboxTableName},
		batch:                         batch,
		drained:                       drained,
	}
}

func (o forwardedOffsets) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	o.drained.Store(len(p.Rows) < o.batch)
	for i, r := range p.Rows {
		if r.Offset == p.LastRow.Offset {
			p.Rows = p.Rows[:i+1]
			break
		}
	}
	q, err := o.PostgreSQLQueueOffsetsAdapter.AckMessageQuery(p)
	if err != nil {
		return q, fmt.Errorf("outbox ack query: %w", err)
	}
	return q, nil
}

// wakeBackoff is watermill-sql's BackoffManager for the outbox: after a
// full batch it reads again at once; after a short one, or on an empty
// outbox, it waits for a wake-up or the poll interval (a commit during the
// batch left its wake-up pending, so nothing waits for the poll); a lost
// race with another forwarder is retried at once, any other error after the
// retry interval.
type wakeBackoff struct {
	wake    <-chan struct{}
	stop    <-chan struct{}
	drained *atomic.Bool // the worker's last batch was short
	poll    time.Duration
	retry   time.Duration
}

func (b wakeBackoff) HandleError(log watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "concurrent update") || strings.Contains(msg, "deadlock") {
			return 0
		}
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, errClosingUnconfirmed):
		case messaging.IsNotConfirmed(err):
			// RabbitMQ refused a publish, as it does while a queue that was
			// just declared starts: the batch stays and goes again. A
			// refusal that lasts is logged as an error by the publisher
			// (renew.go).
			log.Info("publish not confirmed; the batch stays in the outbox", watermill.LogFields{"error": err.Error(), "retry_in": b.retry.String()})
		default:
			log.Error("read outbox", err, watermill.LogFields{"retry_in": b.retry.String()})
		}
		return b.retry
	}
	if !noMsg && !b.drained.Load() {
		return 0
	}
	t := time.NewTimer(b.poll)
	defer t.Stop()
	select {
	case <-b.wake:
	case <-t.C:
	case <-b.stop:
	}
	return 0
}

// Waker wakes an idle forwarder as soon as the service commits a
// transaction, instead of leaving the rows to the next poll. It is a bun
// query hook on the service's database: every transaction the service
// commits there may have appended to the outbox, so a store needs to do
// nothing but commit. (PostgreSQL's LISTEN/NOTIFY would wake other
// replicas too, but a NOTIFY serializes committing transactions.)
type Waker struct{ ch chan struct{} }

// NewWaker returns a waker; add it to the database with bun's WithQueryHook.
func NewWaker() *Waker { return &Waker{ch: make(chan struct{}, 1)} }

var _ bun.QueryHook = (*Waker)(nil)

// BeforeQuery does nothing.
func (w *Waker) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

// AfterQuery wakes one idle forwarder after a successful COMMIT.
func (w *Waker) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if e.Err != nil || e.Query != "COMMIT" {
		return
	}
	w.wake()
}

func (w *Waker) wake() {
	select {
	case w.ch <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (w *Waker) channel() <-chan struct{} {
	if w == nil {
		return nil // never: poll only
	}
	return w.ch
}
