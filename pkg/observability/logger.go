// Package observability holds what every orderflow process shares for being
// watched: the JSON slog logger, the correlation id carried in contexts, the
// OpenTelemetry SDK configured by the standard OTEL_* variables (Setup), the
// Prometheus /metrics handler, and the instrumentation of HTTP (chi +
// otelhttp) and Watermill (trace context through the outbox, the forwarder
// and RabbitMQ; handler, retry, poison and outbox metrics).
//
// docs/observability.md lists every span and metric and how the pieces are
// wired into pkg/platform and pkg/messaging.
package observability

import (
	"context"
	"io"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON logger tagged with the service name. Every record
// logged with a context also carries that context's correlation id, trace id
// and span id, so one order can be followed through both services' logs.
func NewLogger(w io.Writer, service string, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(contextHandler{h}).With("service", service)
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := CorrelationID(ctx); id != "" {
		r.AddAttrs(slog.String("correlation_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// WatermillLogger adapts log for Watermill, as watermill.NewSlogLogger does,
// but asks log whether a level is enabled before handing a record on.
// Watermill logs every message it receives, publishes and acks at its trace
// or debug level, and its slog adapter turns the record's fields into slog
// arguments (a slice per call) before slog drops the record for its level:
// at 600 orders/s that was 4 % of everything the orders service allocated.
// Gated here, a record below the logger's level costs nothing but the
// fields map its caller built.
//
// Watermill's Info records become Debug records: it logs one per handler,
// subscriber, forwarder and publisher channel as each starts and stops
// (about 150 lines a start and shutdown of one service), which buries the
// service's own lines. LOG_LEVEL=debug shows them.
func WatermillLogger(log *slog.Logger) watermill.LoggerAdapter {
	return gatedLogger{inner: watermill.NewSlogLogger(log), log: log}
}

type gatedLogger struct {
	inner watermill.LoggerAdapter
	log   *slog.Logger // the same logger as inner's, for its level
}

func (g gatedLogger) enabled(level slog.Level) bool {
	return g.log.Enabled(context.Background(), level)
}

func (g gatedLogger) Error(msg string, err error, fields watermill.LogFields) {
	if g.enabled(slog.LevelError) {
		g.inner.Error(msg, err, fields)
	}
}

func (g gatedLogger) Info(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelDebug) {
		g.inner.Debug(msg, fields)
	}
}

func (g gatedLogger) Debug(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelDebug) {
		g.inner.Debug(msg, fields)
	}
}

func (g gatedLogger) Trace(msg string, fields watermill.LogFields) {
	if g.enabled(watermill.LevelTrace) {
		g.inner.Trace(msg, fields)
	}
}

// With adds fields to every later record, as Watermill's adapter does (its
// slog.Logger.With shares the handler, and so the level, of log).
func (g gatedLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return gatedLogger{inner: g.inner.With(fields), log: g.log}
}
