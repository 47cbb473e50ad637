// Package platform is what both orderflow services run on: configuration from
// the environment, and the process skeleton that serves HTTP, runs the
// messaging runtime, and drains on SIGTERM.
package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/orderflow/orderflow/pkg/database"
)

// Config is a service's configuration. It comes from environment variables
// only, with defaults that point at a developer's localhost.
type Config struct {
	Service     string
	Version     string // SERVICE_VERSION
	Port        int    // PORT
	DatabaseURL string // DATABASE_URL
	BrokerURL   string // BROKER_URL
	LogLevel    slog.Level
	// CreateDatabase creates the database if it is missing (DATABASE_CREATE,
	// default true for local development).
	CreateDatabase  bool
	DBMaxConns      int           // DATABASE_MAX_CONNS
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT

	MaxRetries         int           // HANDLER_MAX_RETRIES
	RetryInitial       time.Duration // HANDLER_RETRY_INITIAL_INTERVAL
	RetryMax           time.Duration // HANDLER_RETRY_MAX_INTERVAL
	HandlerTimeout     time.Duration // HANDLER_TIMEOUT
	Prefetch           int           // BROKER_PREFETCH
	Concurrency        int           // HANDLER_CONCURRENCY
	OutboxWorkers      int           // OUTBOX_WORKERS
	OutboxPollInterval time.Duration // OUTBOX_POLL_INTERVAL
	OutboxBatchSize    int           // OUTBOX_BATCH_SIZE
	OutboxLinger       time.Duration // OUTBOX_LINGER
	// GroupCommits is how many group-committed transactions of one kind
	// (say, order inserts) may be in flight at once; calls that arrive
	// while they are form the next batch (GROUP_COMMIT_CONCURRENCY).
	GroupCommits   int
	GroupCommitMax int // GROUP_COMMIT_MAX_BATCH: calls per transaction at most
}

// LoadConfig reads the configuration of service through getenv (os.Getenv in
// main, a map in tests). It reports every invalid variable at once.
func LoadConfig(service string, defaultPort int, getenv func(string) string) (Config, error) {
	l := loader{getenv: getenv}
	cfg := Config{
		Service:            service,
		Version:            l.str("SERVICE_VERSION", "dev"),
		Port:               l.int("PORT", defaultPort),
		DatabaseURL:        l.str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"+service+"?sslmode=disable"),
		BrokerURL:          l.str("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		LogLevel:           l.level("LOG_LEVEL", slog.LevelInfo),
		CreateDatabase:     l.bool("DATABASE_CREATE", true),
		DBMaxConns:         l.int("DATABASE_MAX_CONNS", 20),
		ShutdownTimeout:    l.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
		MaxRetries:         l.int("HANDLER_MAX_RETRIES", 5),
		RetryInitial:       l.duration("HANDLER_RETRY_INITIAL_INTERVAL", 100*time.Millisecond),
		RetryMax:           l.duration("HANDLER_RETRY_MAX_INTERVAL", 5*time.Second),
		HandlerTimeout:     l.duration("HANDLER_TIMEOUT", 30*time.Second),
		Prefetch:           l.int("BROKER_PREFETCH", 64),
		Concurrency:        l.int("HANDLER_CONCURRENCY", 16),
		OutboxWorkers:      l.int("OUTBOX_WORKERS", 8),
		OutboxPollInterval: l.duration("OUTBOX_POLL_INTERVAL", time.Second),
		OutboxBatchSize:    l.int("OUTBOX_BATCH_SIZE", 16),
		OutboxLinger:       l.durationOrZero("OUTBOX_LINGER", 2*time.Millisecond),
		GroupCommits:       l.int("GROUP_COMMIT_CONCURRENCY", 1),
		GroupCommitMax:     l.int("GROUP_COMMIT_MAX_BATCH", 64),
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
	if cfg.DBMaxConns < 2 {
		l.errs = append(l.errs, fmt.Errorf("DATABASE_MAX_CONNS must be at least 2, got %d", cfg.DBMaxConns))
	}
	if cfg.GroupCommits < 1 {
		l.errs = append(l.errs, fmt.Errorf("GROUP_COMMIT_CONCURRENCY must be at least 1, got %d", cfg.GroupCommits))
	}
	if cfg.GroupCommitMax < 1 {
		l.errs = append(l.errs, fmt.Errorf("GROUP_COMMIT_MAX_BATCH must be at least 1, got %d", cfg.GroupCommitMax))
	}
	if cfg.Prefetch < 1 {
		l.errs = append(l.errs, fmt.Errorf("BROKER_PREFETCH must be at least 1, got %d", cfg.Prefetch))
	}
	if cfg.Concurrency < 1 {
		l.errs = append(l.errs, fmt.Errorf("HANDLER_CONCURRENCY must be at least 1, got %d", cfg.Concurrency))
	}
	if cfg.OutboxWorkers < 1 {
		l.errs = append(l.errs, fmt.Errorf("OUTBOX_WORKERS must be at least 1, got %d", cfg.OutboxWorkers))
	}
	if cfg.OutboxBatchSize < 1 {
		l.errs = append(l.errs, fmt.Errorf("OUTBOX_BATCH_SIZE must be at least 1, got %d", cfg.OutboxBatchSize))
	}
	if cfg.MaxRetries < 0 {
		l.errs = append(l.errs, fmt.Errorf("HANDLER_MAX_RETRIES must not be negative, got %d", cfg.MaxRetries))
	}
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

func (l *loader) bool(key string, def bool) bool {
	v := l.getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s must be true or false, got %q", key, v))
		return def
	}
	return b
}

// durationOrZero is duration that also accepts 0.
func (l *loader) durationOrZero(key string, def time.Duration) time.Duration {
	if v := l.getenv(key); v == "0" || v == "0s" {
		return 0
	}
	return l.duration(key, def)
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
