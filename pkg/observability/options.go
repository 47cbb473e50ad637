package observability

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName is the instrumentation scope of every span and
// instrument this package makes.
const instrumentationName = "github.com/orderflow/orderflow/pkg/observability"

// Attribute keys orderflow adds to spans beside the semantic conventions'.
// Jaeger finds traces by any of them: search with the tag
// orderflow.correlation_id=<X-Correlation-ID> or orderflow.order_id=<id>.
const (
	// CorrelationIDKey carries the X-Correlation-ID of the request that
	// started the flow. HTTPMiddleware, ConsumeSpan and the publishers set
	// it.
	CorrelationIDKey = attribute.Key("orderflow.correlation_id")
	// OrderIDKey carries an order id. The services set it on the spans of
	// the operations on one order:
	//
	//	trace.SpanFromContext(ctx).SetAttributes(observability.OrderIDKey.String(id))
	OrderIDKey = attribute.Key("orderflow.order_id")
	// InvoiceIDKey carries an invoice id, like OrderIDKey.
	InvoiceIDKey = attribute.Key("orderflow.invoice_id")
)

// Option configures the instrumentation this package offers: HTTPMiddleware,
// ConsumeSpan, NewHandlerMetrics, the publishers, InjectMessage and
// ExtractMessage. Without options they use OpenTelemetry's global providers
// and propagator, the ones Setup installs, like every OpenTelemetry
// instrumentation library; tests and processes that run more than one
// service pass Telemetry.Options instead.
type Option func(*config)

// WithTracerProvider makes the instrumentation start its spans with tp
// instead of the global tracer provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// WithMeterProvider makes the instrumentation record its metrics with mp
// instead of the global meter provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meterProvider = mp }
}

// WithPropagator makes the instrumentation inject and extract trace context
// with p instead of the global propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

type config struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
}

// newConfig applies opts over the global providers. The globals are
// delegates: instrumentation built before Setup still reports to the
// providers Setup installs.
func newConfig(opts []Option) config {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	if c.meterProvider == nil {
		c.meterProvider = otel.GetMeterProvider()
	}
	if c.propagator == nil {
		c.propagator = otel.GetTextMapPropagator()
	}
	return c
}

func (c config) tracer() trace.Tracer { return c.tracerProvider.Tracer(instrumentationName) }

func (c config) meter() metric.Meter { return c.meterProvider.Meter(instrumentationName) }
