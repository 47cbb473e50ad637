package platform

import (
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// Messaging is what a service needs of RabbitMQ besides its handlers: its
// topology, and the waker its database commits through.
type Messaging struct {
	Topology messaging.Topology
	Waker    *outbox.Waker
	Register func(*messaging.EventProcessor) error
}

// NewRuntime returns the service's messaging runtime: the router with its
// handlers and the forwarder of the outbox in relay (database.OpenRelay),
// connected in the background once it runs.
func NewRuntime(cfg Config, log *slog.Logger, tel *observability.Telemetry, relay *sql.DB, m Messaging) (*Runtime, error) {
	t := cfg.Tuning
	topology := m.Topology
	topology.QueueType = cfg.BrokerQueueType
	rt := &Runtime{
		Broker: messaging.BrokerConfig{
			URL: cfg.BrokerURL, Prefetch: t.Prefetch, Consumers: t.Consumers,
			AckBatching: t.AckBatching, DrainTimeout: cfg.ShutdownTimeout,
			PublisherChannels: publisherChannels(t),
			Topology:          topology,
		},
		Router: messaging.RouterConfig{
			Service: cfg.Service, Version: cfg.Version,
			MaxRetries: cfg.MaxRetries, RetryInitial: cfg.RetryInitial, RetryMax: cfg.RetryMax,
			HandlerTimeout: cfg.HandlerTimeout, CloseTimeout: cfg.ShutdownTimeout,
			Otel: tel.Options(),
		},
		Forwarder: outbox.ForwarderConfig{
			Workers: t.OutboxWorkers, BatchSize: t.OutboxBatchSize, PollInterval: t.OutboxPollInterval,
			Waker: m.Waker, Pipeline: t.OutboxPipeline, CloseTimeout: cfg.ShutdownTimeout,
		},
		Outbox:   relay,
		Register: m.Register,
		Log:      observability.WatermillLogger(log),
	}
	if err := tel.RegisterPoisonDepth(rt.PoisonDepth); err != nil {
		return nil, fmt.Errorf("register poison gauge: %w", err)
	}
	return rt, nil
}

// publisherChannels sizes the publisher's channel pool: a publish holds its
// channel until RabbitMQ confirms it, so one per publish in flight (a worker's
// whole batch when pipelined), at most 32, and one for the poison queue.
func publisherChannels(t Tuning) int {
	inFlight := t.OutboxWorkers
	if t.OutboxPipeline {
		inFlight *= t.OutboxBatchSize
	}
	return min(inFlight, 32) + 1
}
