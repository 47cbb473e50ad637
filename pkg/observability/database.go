package observability

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// DatabaseSpan starts the CLIENT span of a statement that goes to
// PostgreSQL around bun, and so around bunotel's query hook (the outbox's
// batch write, sent with its arguments). It is named as the other query
// spans are, "{operation} {table}" ("INSERT orders"); end calls End and
// records err, if any.
func DatabaseSpan(ctx context.Context, name, statement string, opts ...Option) (_ context.Context, end func(err error)) {
	op, _, _ := strings.Cut(name, " ")
	ctx, span := newConfig(opts).tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		// The keys bunotel gives the other query spans of the same trace.
		trace.WithAttributes(
			attribute.String("db.system", "postgresql"),
			attribute.String("db.operation", op),
			attribute.String("db.statement", statement),
		))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
