package observability

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/orderflow/orderflow/pkg/groupcommit"
)

// The OpenTelemetry names of the metrics every service records.
// docs/observability.md lists the names Prometheus shows (dots become
// underscores, the unit "s" adds _seconds, counters get _total). The apps
// record their business metrics themselves.
const (
	metricOutboxBacklog     = "orderflow.outbox.backlog"
	metricOutboxOldestAge   = "orderflow.outbox.oldest_age"
	metricOutboxForwardLag  = "orderflow.outbox.forward_lag"
	metricPoisonDepth       = "orderflow.poison.depth"
	metricMessagesProcessed = "orderflow.messages.processed"
	metricMessagesRetried   = "orderflow.messages.retried"
	metricMessagesPoisoned  = "orderflow.messages.poisoned"
	metricDBBatchSize       = "orderflow.db.batch_size"
)

// callbackTimeout bounds one gauge callback: a scrape must not hang on a
// slow database or broker.
const callbackTimeout = 5 * time.Second

// Bucket boundaries in seconds. The SDK's default boundaries are meant for
// milliseconds and would put every observation in the first bucket.
var (
	// handlingBuckets: a handler takes milliseconds; with retries and
	// backoff, seconds.
	handlingBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
	// LagBuckets are for the time an event takes to travel: milliseconds
	// (the latency targets are 20 ms for forwarding and 50 ms end to end,
	// hence the fine low end), or minutes while RabbitMQ is down and the
	// outbox holds the events.
	LagBuckets = []float64{0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600}
	// batchBuckets: writes per shared transaction (at most 64).
	batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64}
)

// instruments are the gauges a Telemetry records from callbacks, and the
// size of shared transactions.
type instruments struct {
	outboxBacklog   metric.Int64ObservableGauge
	outboxOldestAge metric.Float64ObservableGauge
	poisonDepth     metric.Int64ObservableGauge
	dbBatchSize     metric.Int64Histogram
}

func (in *instruments) init(m metric.Meter) error {
	var errs [4]error
	in.outboxBacklog, errs[0] = m.Int64ObservableGauge(metricOutboxBacklog,
		metric.WithUnit("{message}"), metric.WithDescription("Outbox rows waiting for the forwarder."))
	in.outboxOldestAge, errs[1] = m.Float64ObservableGauge(metricOutboxOldestAge,
		metric.WithUnit("s"), metric.WithDescription("Age of the oldest outbox row waiting for the forwarder (0 when empty)."))
	in.poisonDepth, errs[2] = m.Int64ObservableGauge(metricPoisonDepth,
		metric.WithUnit("{message}"), metric.WithDescription("Messages in the service's poison queue."))
	in.dbBatchSize, errs[3] = m.Int64Histogram(metricDBBatchSize,
		metric.WithUnit("{call}"), metric.WithExplicitBucketBoundaries(batchBuckets...),
		metric.WithDescription("Writes carried by one shared transaction (group commit)."))
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("create instruments: %w", err)
	}
	return nil
}

// BacklogFunc reports the outbox backlog: how many rows wait for the
// forwarder and how old the oldest is (0 when none waits).
type BacklogFunc func(ctx context.Context) (rows int64, oldestAge time.Duration, err error)

// RegisterOutboxBacklog makes fn the source of the outbox gauges,
// orderflow.outbox.backlog and orderflow.outbox.oldest_age. fn runs on every
// collection (every scrape of /metrics), bounded by a few seconds; when it
// fails the gauges are left out of that collection and the error goes to
// OpenTelemetry's error handler. Register once per process.
func (t *Telemetry) RegisterOutboxBacklog(fn BacklogFunc) error {
	if t == nil {
		return nil
	}
	_, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		rows, age, err := fn(ctx)
		if err != nil {
			return fmt.Errorf("observe outbox backlog: %w", err)
		}
		o.ObserveInt64(t.outboxBacklog, rows)
		o.ObserveFloat64(t.outboxOldestAge, max(age, 0).Seconds())
		return nil
	}, t.outboxBacklog, t.outboxOldestAge)
	if err != nil {
		return fmt.Errorf("register outbox backlog callback: %w", err)
	}
	return nil
}

// DepthFunc reports how many messages a queue holds.
type DepthFunc func(ctx context.Context) (int64, error)

// RegisterPoisonDepth makes fn the source of orderflow.poison.depth, the
// number of messages in the service's poison queue, like
// RegisterOutboxBacklog. Register once per process.
func (t *Telemetry) RegisterPoisonDepth(fn DepthFunc) error {
	if t == nil {
		return nil
	}
	_, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		n, err := fn(ctx)
		if err != nil {
			return fmt.Errorf("observe poison queue depth: %w", err)
		}
		o.ObserveInt64(t.poisonDepth, n)
		return nil
	}, t.poisonDepth)
	if err != nil {
		return fmt.Errorf("register poison depth callback: %w", err)
	}
	return nil
}

// Batching returns the instrumentation of shared transactions (see
// pkg/groupcommit): a span per transaction of several writes, and the
// histogram orderflow_db_batch_size. Nil returns a config without either.
func (t *Telemetry) Batching() groupcommit.Config {
	if t == nil {
		return groupcommit.Config{}
	}
	return groupcommit.Config{Tracer: t.tracerProvider.Tracer(instrumentationName), Sizes: t.dbBatchSize}
}
