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
