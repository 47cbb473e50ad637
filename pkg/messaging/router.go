package messaging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/orderflow/orderflow/pkg/observability"
)

// Metadata keys the poison queue adds to a failed message, beside Watermill's
// reason_poisoned, topic_poisoned, handler_poisoned and subscriber_poisoned.
const (
	MetadataErrorType      = "error_type_poisoned"
	MetadataAttempts       = "attempts_poisoned"
	MetadataFirstFailureAt = "first_failure_at_poisoned"
	MetadataLastFailureAt  = "last_failure_at_poisoned"
	MetadataPoisonService  = "service_poisoned"
	MetadataServiceVersion = "service_version_poisoned"
	MetadataHost           = "host_poisoned"
)

// RouterConfig configures a consuming service's router.
type RouterConfig struct {
	Service string // names the poison queue: poison.<service>
	Version string // recorded on poisoned messages
	// MaxRetries is how often a transiently failing handler is retried before
	// its message goes to the poison queue.
	MaxRetries      int
	RetryInitial    time.Duration
	RetryMax        time.Duration
	HandlerTimeout  time.Duration
	CloseTimeout    time.Duration
	PoisonPublisher message.Publisher
	// Otel selects the tracer and meter providers (nil: the globals).
	Otel []observability.Option
}

func (c RouterConfig) withDefaults() RouterConfig {
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = 30 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 15 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// NewRouter returns a Watermill router with orderflow's middleware stack,
// outermost first:
//
//  1. a consumer span: the W3C trace context and the correlation id in the
//     message metadata become the handler's context;
//  2. correlation id (Watermill's, for messages a handler returns);
//  3. poison queue: a message whose handling finally failed is published to
//     poison.<service> with the failure's details, then acked;
//  4. retry with exponential backoff and jitter, skipped for Permanent errors;
//  5. recoverer: a panic becomes an error carrying its stack;
//  6. a timeout per handler attempt.
func NewRouter(cfg RouterConfig, log watermill.LoggerAdapter) (*message.Router, error) {
	cfg = cfg.withDefaults()
	if cfg.Service == "" {
		return nil, errors.New("router config: service is required")
	}
	if cfg.PoisonPublisher == nil {
		return nil, errors.New("router config: poison publisher is required")
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, log)
	if err != nil {
		return nil, fmt.Errorf("create router: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(observability.PoisonPublisher(cfg.PoisonPublisher, cfg.Otel...),
		PoisonQueue(cfg.Service), shouldPoison)
	if err != nil {
		return nil, fmt.Errorf("create poison queue middleware: %w", err)
	}
	metrics := observability.NewHandlerMetrics(cfg.Otel...)
	host, _ := os.Hostname()
	router.AddMiddleware(
		observability.ConsumeSpan(cfg.Otel...), // trace and correlation id into the context
		middleware.CorrelationID,
		poison,
		metrics.Message,
		recordFailure(cfg.Service, cfg.Version, host),
		newRetry(cfg, log).Middleware, // not middleware.Retry: see retry.go
		metrics.Attempt,
		countAttempt,
		middleware.Recoverer,
		middleware.Timeout(cfg.HandlerTimeout),
	)
	return router, nil
}

// shouldPoison keeps a message whose handling was cut short by the
// process stopping out of the poison queue: it is nacked, and redelivered.
func shouldPoison(err error) bool {
	return !errors.Is(err, context.Canceled)
}

// failures records the attempts made on one message. Watermill's poison
// middleware records the reason, topic and handler, but not how often the
// handler was tried or when, which is what an operator asks first.
type failures struct {
	mu       sync.Mutex
	attempts int
	first    time.Time
	last     time.Time
}

type failuresKey struct{}

// recordFailure sits between the poison queue and the retries: it gives the
// message a failure log for countAttempt to fill, and stamps the log onto the
// metadata when handling finally fails, right before the poison middleware
// publishes the message.
func recordFailure(service, version, host string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			f := &failures{}
			ctx := context.WithValue(msg.Context(), failuresKey{}, f)
			msg.SetContext(ctx)
			out, err := h(msg)
			// The timeout middleware leaves its cancelled context on the
			// message; the poison queue publishes with the message's
			// context, so give it back the live one.
			msg.SetContext(ctx)
			if err == nil {
				return out, nil
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.attempts == 0 { // failed before any attempt ran
				f.attempts, f.first, f.last = 1, time.Now(), time.Now()
			}
			msg.Metadata.Set(MetadataErrorType, errorType(err))
			msg.Metadata.Set(MetadataAttempts, strconv.Itoa(f.attempts))
			msg.Metadata.Set(MetadataFirstFailureAt, f.first.UTC().Format(time.RFC3339Nano))
			msg.Metadata.Set(MetadataLastFailureAt, f.last.UTC().Format(time.RFC3339Nano))
			msg.Metadata.Set(MetadataPoisonService, service)
			msg.Metadata.Set(MetadataServiceVersion, version)
			msg.Metadata.Set(MetadataHost, host)
			return out, err
		}
	}
}

// countAttempt runs inside the retries: once per attempt.
func countAttempt(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			if f, ok := msg.Context().Value(failuresKey{}).(*failures); ok {
				f.mu.Lock()
				now := time.Now()
				f.attempts++
				if f.first.IsZero() {
					f.first = now
				}
				f.last = now
				f.mu.Unlock()
			}
		}
		return out, err
	}
}

// errorType names the kind of failure: permanent or transient, and the Go
// type of the innermost error.
func errorType(err error) string {
	kind := "transient"
	if IsPermanent(err) {
		kind = "permanent"
	}
	var panicErr middleware.RecoveredPanicError
	if errors.As(err, &panicErr) {
		kind = "panic"
	}
	inner := err
	for {
		next := errors.Unwrap(inner)
		if next == nil {
			break
		}
		inner = next
	}
	return fmt.Sprintf("%s:%T", kind, inner)
}
