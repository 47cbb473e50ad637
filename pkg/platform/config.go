package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// DefaultOutboxMaxBacklog is OUTBOX_MAX_BACKLOG's default: about a second
// of what the forwarder publishes at saturation on two cores
// (docs/performance.md), so that at saturation an event waits about that
// long, and RabbitMQ can be out of reach for that many orders before POST
// /orders is refused.
const DefaultOutboxMaxBacklog = 1000

// Config is a service's configuration. It comes from environment variables
// only, with defaults that point at a developer's localhost.
type Config struct {
	Service string
	Version string // SERVICE_VERSION
	// Host is the interface HTTP listens on (HTTP_HOST): 127.0.0.1 by
	// default, so a service run natively is not reachable from the network;
	// containers set 0.0.0.0.
	Host        string
	Port        int    // PORT
	DatabaseURL string // DATABASE_URL
	BrokerURL   string // BROKER_URL
	// BrokerQueueType is the type of the queues the service declares
	// (BROKER_QUEUE_TYPE): quorum, the default, or classic for a single-node
	// broker (messaging.QueueClassic says what it gives up).
	BrokerQueueType messaging.QueueType
	LogLevel        slog.Level
	// CreateDatabase creates the database if it is missing (DATABASE_CREATE,
	// default true for local development).
	CreateDatabase  bool
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT

	MaxRetries     int           // HANDLER_MAX_RETRIES
	RetryInitial   time.Duration // HANDLER_RETRY_INITIAL_INTERVAL
	RetryMax       time.Duration // HANDLER_RETRY_MAX_INTERVAL
	HandlerTimeout time.Duration // HANDLER_TIMEOUT

	// OutboxMaxBacklog holds writes back, and then sheds them, while more
	// events than this wait in the outbox (OUTBOX_MAX_BACKLOG, default 1000;
	// 0: never).
	OutboxMaxBacklog int64

	Tuning Tuning
}

// Tuning holds the settings that trade resources for throughput. The
// defaults are what docs/performance.md measured; most deployments never
// change them.
type Tuning struct {
	DBMaxConns int // DATABASE_MAX_CONNS: connection pool size
	// Prefetch is how many unacknowledged deliveries RabbitMQ keeps in
	// flight per consumer (BROKER_PREFETCH).
	Prefetch int
	// Consumers is how many messages of one handler's queue a process
	// handles at once (HANDLER_CONCURRENCY).
	Consumers int
	// OutboxWorkers forwarders relay the outbox side by side, each reading
	// OutboxBatchSize rows at a time (OUTBOX_WORKERS, OUTBOX_BATCH_SIZE).
	OutboxWorkers   int
	OutboxBatchSize int
	// OutboxPollInterval is how often an idle forwarder reads the outbox
	// when no commit woke it (OUTBOX_POLL_INTERVAL).
	OutboxPollInterval time.Duration
	// GroupCommit lets the writes that arrive while a transaction is in
	// flight share the next one (GROUP_COMMIT; see pkg/groupcommit).
	GroupCommit bool
	// OutboxPipeline publishes a forwarded batch's rows without waiting for
	// each confirm (OUTBOX_PIPELINE; see pkg/outbox/pipeline.go).
	OutboxPipeline bool
	// AckBatching acknowledges a queue's deliveries in batches, on one
	// channel per queue (BROKER_ACK_BATCHING; see pkg/messaging/subscriber.go).
	AckBatching bool
}

// LoadConfig reads the configuration of service through getenv (os.Getenv in
// main, a map in tests). It reports every invalid variable at once.
func LoadConfig(service string, defaultPort int, getenv func(string) string) (Config, error) {
	l := loader{getenv: getenv}
	cfg := Config{
		Service:          service,
		Version:          l.str("SERVICE_VERSION", "dev"),
		Host:             l.str("HTTP_HOST", "127.0.0.1"),
		Port:             l.int("PORT", defaultPort),
		DatabaseURL:      l.str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"+service+"?sslmode=disable"),
		BrokerURL:        l.str("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		BrokerQueueType:  l.queueType("BROKER_QUEUE_TYPE"),
		LogLevel:         l.level("LOG_LEVEL", slog.LevelInfo),
		CreateDatabase:   l.enabled("DATABASE_CREATE"),
		ShutdownTimeout:  l.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
		MaxRetries:       l.int("HANDLER_MAX_RETRIES", 5),
		RetryInitial:     l.duration("HANDLER_RETRY_INITIAL_INTERVAL", 100*time.Millisecond),
		RetryMax:         l.duration("HANDLER_RETRY_MAX_INTERVAL", 5*time.Second),
		HandlerTimeout:   l.duration("HANDLER_TIMEOUT", 30*time.Second),
		OutboxMaxBacklog: int64(l.int("OUTBOX_MAX_BACKLOG", DefaultOutboxMaxBacklog)),
		Tuning: Tuning{
			DBMaxConns:         l.int("DATABASE_MAX_CONNS", 20),
			Prefetch:           l.int("BROKER_PREFETCH", 256),
			Consumers:          l.int("HANDLER_CONCURRENCY", 64),
			OutboxWorkers:      l.int("OUTBOX_WORKERS", 2),
			OutboxBatchSize:    l.int("OUTBOX_BATCH_SIZE", 16),
			OutboxPollInterval: l.duration("OUTBOX_POLL_INTERVAL", time.Second),
			GroupCommit:        l.enabled("GROUP_COMMIT"),
			OutboxPipeline:     l.enabled("OUTBOX_PIPELINE"),
			AckBatching:        l.enabled("BROKER_ACK_BATCHING"),
		},
	}
	// On ECS the URL is assembled from DATABASE_HOST, _USER, _PASSWORD (docs/deploy.md).
	if dsn, ok, err := database.URLFromParts(getenv, service); err != nil {
		l.errs = append(l.errs, err)
	} else if ok {
		cfg.DatabaseURL = dsn
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		l.errs = append(l.errs, fmt.Errorf("PORT must be 0-65535, got %d", cfg.Port))
	}
	if cfg.MaxRetries < 0 {
		l.errs = append(l.errs, fmt.Errorf("HANDLER_MAX_RETRIES must not be negative, got %d", cfg.MaxRetries))
	}
	if cfg.OutboxMaxBacklog < 0 {
		l.errs = append(l.errs, fmt.Errorf("OUTBOX_MAX_BACKLOG must not be negative (0: no bound), got %d", cfg.OutboxMaxBacklog))
	}
	t := cfg.Tuning
	l.atLeast("DATABASE_MAX_CONNS", t.DBMaxConns, 2)
	l.atLeast("BROKER_PREFETCH", t.Prefetch, 1)
	l.atLeast("HANDLER_CONCURRENCY", t.Consumers, 1)
	l.atLeast("OUTBOX_WORKERS", t.OutboxWorkers, 1)
	l.atLeast("OUTBOX_BATCH_SIZE", t.OutboxBatchSize, 1)
	return cfg, errors.Join(l.errs...)
}

type loader struct {
	getenv func(string) string
	errs   []error
}

func (l *loader) str(key, def string) string {
	if v := l.getenv(key); v != "" {
		return v
	}
	return def
}

func (l *loader) int(key string, def int) int {
	v := l.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s must be an integer, got %q", key, v))
		return def
	}
	return n
}

func (l *loader) level(key string, def slog.Level) slog.Level {
	v := l.getenv(key)
	if v == "" {
		return def
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(v)); err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s must be debug, info, warn or error, got %q", key, v))
		return def
	}
	return lvl
}

// enabled reads a switch that is on unless key says false.
func (l *loader) enabled(key string) bool {
	v := l.getenv(key)
	if v == "" {
		return true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s must be true or false, got %q", key, v))
		return true
	}
	return b
}

func (l *loader) queueType(key string) messaging.QueueType {
	t, err := messaging.ParseQueueType(l.getenv(key))
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s: %w", key, err))
		return messaging.QueueQuorum
	}
	return t
}

func (l *loader) atLeast(key string, v, least int) {
	if v < least {
		l.errs = append(l.errs, fmt.Errorf("%s must be at least %d, got %d", key, least, v))
	}
}

func (l *loader) duration(key string, def time.Duration) time.Duration {
	v := l.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.errs = append(l.errs, fmt.Errorf("%s must be a positive duration such as 250ms, got %q", key, v))
		return def
	}
	return d
}
