package platform_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/platform"
)

// env is a getenv backed by a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig_defaults(t *testing.T) {
	t.Parallel()
	// defaults is the configuration of service with no variable set: only
	// the name, the port and the database differ between the services.
	defaults := func(service string, port int) platform.Config {
		return platform.Config{
			Service: service, Version: "dev", Host: "127.0.0.1", Port: port,
			DatabaseURL:      "postgres://postgres@127.0.0.1:5432/" + service + "?sslmode=disable",
			BrokerURL:        "amqp://guest:guest@127.0.0.1:5672/",
			BrokerQueueType:  messaging.QueueQuorum,
			LogLevel:         slog.LevelInfo,
			CreateDatabase:   true,
			ShutdownTimeout:  20 * time.Second,
			MaxRetries:       5,
			RetryInitial:     100 * time.Millisecond,
			RetryMax:         5 * time.Second,
			HandlerTimeout:   30 * time.Second,
			OutboxMaxBacklog: 1000,
			Tuning: platform.Tuning{
				DBMaxConns: 20, Prefetch: 256, Consumers: 64,
				OutboxWorkers: 2, OutboxBatchSize: 16, OutboxPollInterval: time.Second, GroupCommit: true, OutboxPipeline: true, AckBatching: true,
			},
		}
	}
	tests := []struct {
		name    string
		service string
		port    int
		want    platform.Config
	}{
		{name: "orders", service: "orders", port: 8080, want: defaults("orders", 8080)},
		{name: "invoices", service: "invoices", port: 8081, want: defaults("invoices", 8081)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := platform.LoadConfig(tt.service, tt.port, func(string) string { return "" })
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLoadConfig_overrides(t *testing.T) {
	t.Parallel()
	got, err := platform.LoadConfig("orders", 8080, env(map[string]string{
		"SERVICE_VERSION":                "1.2.3",
		"PORT":                           "0",
		"HTTP_HOST":                      "::",
		"DATABASE_URL":                   "postgres://u:p@db:5432/o",
		"BROKER_URL":                     "amqp://u:p@mq:5672/v",
		"BROKER_QUEUE_TYPE":              "classic",
		"LOG_LEVEL":                      "debug",
		"DATABASE_CREATE":                "false",
		"DATABASE_MAX_CONNS":             "7",
		"SHUTDOWN_TIMEOUT":               "3s",
		"HANDLER_MAX_RETRIES":            "0",
		"HANDLER_RETRY_INITIAL_INTERVAL": "10ms",
		"HANDLER_RETRY_MAX_INTERVAL":     "1m",
		"HANDLER_TIMEOUT":                "2s",
		"BROKER_PREFETCH":                "8",
		"HANDLER_CONCURRENCY":            "3",
		"OUTBOX_WORKERS":                 "2",
		"OUTBOX_POLL_INTERVAL":           "250ms",
		"OUTBOX_BATCH_SIZE":              "10",
		"GROUP_COMMIT":                   "false",
		"OUTBOX_PIPELINE":                "false",
		"BROKER_ACK_BATCHING":            "false",
		"OUTBOX_MAX_BACKLOG":             "0",
	}))
	require.NoError(t, err)
	assert.Equal(t, platform.Config{
		Service: "orders", Version: "1.2.3", Host: "::", Port: 0,
		DatabaseURL:     "postgres://u:p@db:5432/o",
		BrokerURL:       "amqp://u:p@mq:5672/v",
		BrokerQueueType: messaging.QueueClassic,
		LogLevel:        slog.LevelDebug,
		CreateDatabase:  false,
		ShutdownTimeout: 3 * time.Second,
		MaxRetries:      0,
		RetryInitial:    10 * time.Millisecond,
		RetryMax:        time.Minute,
		HandlerTimeout:  2 * time.Second,
		Tuning: platform.Tuning{
			DBMaxConns: 7, Prefetch: 8, Consumers: 3,
			OutboxWorkers: 2, OutboxBatchSize: 10, OutboxPollInterval: 250 * time.Millisecond,
		},
	}, got)
}

func TestLoadConfig_single_override(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		value string
		field func(platform.Config) any
		want  any
	}{
		{name: "all interfaces", key: "HTTP_HOST", value: "0.0.0.0", field: func(c platform.Config) any { return c.Host }, want: "0.0.0.0"},
		{name: "max port", key: "PORT", value: "65535", field: func(c platform.Config) any { return c.Port }, want: 65535},
		{name: "bool 1", key: "DATABASE_CREATE", value: "1", field: func(c platform.Config) any { return c.CreateDatabase }, want: true},
		{name: "bool FALSE", key: "DATABASE_CREATE", value: "FALSE", field: func(c platform.Config) any { return c.CreateDatabase }, want: false},
		{name: "log level warn", key: "LOG_LEVEL", value: "WARN", field: func(c platform.Config) any { return c.LogLevel }, want: slog.LevelWarn},
		{name: "outbox bound", key: "OUTBOX_MAX_BACKLOG", value: "50000", field: func(c platform.Config) any { return c.OutboxMaxBacklog }, want: int64(50000)},
		{name: "log level error", key: "LOG_LEVEL", value: "error", field: func(c platform.Config) any { return c.LogLevel }, want: slog.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := platform.LoadConfig("orders", 8080, env(map[string]string{tt.key: tt.value}))
			require.NoError(t, err)
			assert.Equal(t, tt.want, tt.field(got))
		})
	}
}

func TestLoadConfig_invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		// want lists, per reported error, a string it contains.
		want []string
	}{
		{name: "port not a number", env: map[string]string{"PORT": "http"}, want: []string{`PORT must be an integer, got "http"`}},
		{name: "port out of range", env: map[string]string{"PORT": "70000"}, want: []string{"PORT must be 0-65535, got 70000"}},
		{name: "negative port", env: map[string]string{"PORT": "-1"}, want: []string{"PORT must be 0-65535, got -1"}},
		{name: "bad bool", env: map[string]string{"DATABASE_CREATE": "maybe"}, want: []string{`DATABASE_CREATE must be true or false, got "maybe"`}},
		{name: "bad duration", env: map[string]string{"SHUTDOWN_TIMEOUT": "20"}, want: []string{`SHUTDOWN_TIMEOUT must be a positive duration`}},
		{name: "zero duration", env: map[string]string{"HANDLER_TIMEOUT": "0s"}, want: []string{`HANDLER_TIMEOUT must be a positive duration`}},
		{name: "negative duration", env: map[string]string{"OUTBOX_POLL_INTERVAL": "-5ms"}, want: []string{`OUTBOX_POLL_INTERVAL must be a positive duration`}},
		{name: "negative retries", env: map[string]string{"HANDLER_MAX_RETRIES": "-1"}, want: []string{"HANDLER_MAX_RETRIES must not be negative, got -1"}},
		{name: "unknown queue type", env: map[string]string{"BROKER_QUEUE_TYPE": "stream"}, want: []string{`BROKER_QUEUE_TYPE: queue type must be quorum or classic, got "stream"`}},
		{name: "negative outbox bound", env: map[string]string{"OUTBOX_MAX_BACKLOG": "-1"}, want: []string{"OUTBOX_MAX_BACKLOG must not be negative (0: no bound), got -1"}},
		{
			name: "all reported at once",
			env: map[string]string{
				"PORT":                           "99999",
				"DATABASE_CREATE":                "yes please",
				"DATABASE_MAX_CONNS":             "many",
				"SHUTDOWN_TIMEOUT":               "soon",
				"HANDLER_MAX_RETRIES":            "-3",
				"HANDLER_RETRY_INITIAL_INTERVAL": "0",
				"BROKER_PREFETCH":                "1.5",
				"OUTBOX_BATCH_SIZE":              "x",
			},
			want: []string{
				"DATABASE_CREATE", "DATABASE_MAX_CONNS", "SHUTDOWN_TIMEOUT", "HANDLER_RETRY_INITIAL_INTERVAL",
				"BROKER_PREFETCH", "OUTBOX_BATCH_SIZE", "PORT must be 0-65535", "HANDLER_MAX_RETRIES",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := platform.LoadConfig("orders", 8080, env(tt.env))
			require.Error(t, err)
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
			var joined interface{ Unwrap() []error }
			require.True(t, errors.As(err, &joined), "errors.Join reports each variable: %v", err)
			assert.Len(t, joined.Unwrap(), len(tt.want), "one error per invalid variable: %v", err)
			assert.Equal(t, "orders", got.Service)
		})
	}
}

func TestLoadConfig_invalid_falls_back_to_defaults(t *testing.T) {
	t.Parallel()
	got, err := platform.LoadConfig("orders", 8080, env(map[string]string{
		"PORT": "abc", "DATABASE_CREATE": "maybe", "SHUTDOWN_TIMEOUT": "forever", "BROKER_PREFETCH": "lots",
		"BROKER_QUEUE_TYPE": "lazy",
	}))
	require.Error(t, err)
	assert.Equal(t, 8080, got.Port)
	assert.True(t, got.CreateDatabase)
	assert.Equal(t, 20*time.Second, got.ShutdownTimeout)
	assert.Equal(t, 256, got.Tuning.Prefetch)
	assert.Equal(t, messaging.QueueQuorum, got.BrokerQueueType)
}
