package observability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The standard OpenTelemetry environment variables Setup reads through its
// getenv argument. The OTLP exporters read their own settings
// (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, … and the per-signal
// variants), and the trace SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*,
// from the process environment, as the specification defines.
const (
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envMetricsExporter    = "OTEL_METRICS_EXPORTER"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envOTLPMetricsProto   = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
)

// Telemetry is a process's OpenTelemetry SDK: its tracer and meter
// providers, the W3C propagator, the Prometheus registry behind /metrics and
// orderflow's own instruments. Build it with Setup (or New), serve
// MetricsHandler at /metrics, and call Shutdown before the process exits so
// that the last spans and metrics are exported.
//
// A nil *Telemetry is valid and records nothing, so code that takes one can
// be tested without it.
type Telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	metrics        http.Handler
	meter          metric.Meter
	disabled       bool // OTEL_SDK_DISABLED: no-op providers
	shutdown       func(context.Context) error

	shutdownOnce sync.Once
	shutdownErr  error

	instruments
}

// SetupOption configures Setup and New.
type SetupOption func(*setupConfig)

type setupConfig struct {
	processors []sdktrace.SpanProcessor
	console    io.Writer
	log        *slog.Logger
}

// WithSpanProcessor adds p to the tracer provider, beside the exporters that
// OTEL_TRACES_EXPORTER chooses. Tests pass a tracetest.SpanRecorder.
func WithSpanProcessor(p sdktrace.SpanProcessor) SetupOption {
	return func(c *setupConfig) { c.processors = append(c.processors, p) }
}

// WithConsoleWriter sets where the console exporters write (OTEL_TRACES_EXPORTER
// or OTEL_METRICS_EXPORTER=console). The default is standard output, as the
// specification says.
func WithConsoleWriter(w io.Writer) SetupOption {
	return func(c *setupConfig) { c.console = w }
}

// WithLogger makes Setup route OpenTelemetry's internal errors (an exporter
// that cannot reach its collector, a failing gauge callback) to log, so they
// are JSON lines like the rest of the service's output. New, which sets no
// globals, ignores it.
func WithLogger(log *slog.Logger) SetupOption {
	return func(c *setupConfig) { c.log = log }
}

// Setup builds the process's Telemetry with New and installs it as
// OpenTelemetry's global tracer provider, meter provider and propagator (W3C
// traceparent/tracestate and baggage), which the instrumentation in this
// package, otelhttp and bunotel use by default. Call it once per process, in
// main, before building anything that traces.
func Setup(ctx context.Context, service, version string, getenv func(string) string, opts ...SetupOption) (*Telemetry, error) {
	t, err := New(ctx, service, version, getenv, opts...)
	if err != nil {
		return nil, err
	}
	var cfg setupConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	otel.SetTracerProvider(t.tracerProvider)
	otel.SetMeterProvider(t.meterProvider)
	otel.SetTextMapPropagator(t.propagator)
	if cfg.log != nil {
		log := cfg.log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Error("opentelemetry", "error", err)
		}))
	}
	return t, nil
}

// New builds a Telemetry configured by the standard OTEL_* environment
// variables, read through getenv, without installing anything globally:
//
//   - OTEL_SDK_DISABLED=true: no-op tracer and meter providers; /metrics
//     serves only the Go runtime and process collectors.
//   - OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else
//     service, names the service; OTEL_RESOURCE_ATTRIBUTES adds resource
//     attributes (key=value,…, values percent-encoded); version is
//     service.version unless OTEL_RESOURCE_ATTRIBUTES sets it.
//   - OTEL_TRACES_EXPORTER: a comma-separated list of otlp, console and
//     none. The default is otlp when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT says where a collector listens, and
//     none otherwise: a binary started with no configuration does not log a
//     failed export every few seconds to a collector that is not there.
//   - OTEL_METRICS_EXPORTER: a comma-separated list of prometheus (the
//     default), otlp, console and none. Prometheus is always served by
//     MetricsHandler, whatever the list says; otlp and console add a
//     periodic push exporter beside it.
//   - OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL and
//     OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: http/protobuf (the default) or
//     grpc.
//
// An unknown exporter or protocol is an error: a typo must not silently
// turn tracing off.
func New(ctx context.Context, service, version string, getenv func(string) string, opts ...SetupOption) (*Telemetry, error) {
	cfg := setupConfig{console: os.Stdout}
	for _, opt := range opts {
		opt(&cfg)
	}
	t := &Telemetry{propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}

	envAttrs, err := parseResourceAttributes(getenv(envResourceAttributes))
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	// The runtime collectors get the service_name label the OpenTelemetry
	// metrics get from the resource, so one dashboard filter fits all.
	runtime := prometheus.WrapRegistererWith(prometheus.Labels{"service_name": serviceName(service, envAttrs, getenv)}, reg)
	if err := errors.Join(
		runtime.Register(collectors.NewGoCollector()),
		runtime.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, fmt.Errorf("register runtime collectors: %w", err)
	}
	t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})

	if strings.EqualFold(strings.TrimSpace(getenv(envSDKDisabled)), "true") {
		t.disabled = true
		t.tracerProvider = tracenoop.NewTracerProvider()
		t.meterProvider = metricnoop.NewMeterProvider()
		t.shutdown = func(context.Context) error { return nil }
	} else if err := t.buildSDK(ctx, service, version, envAttrs, getenv, cfg, reg); err != nil {
		return nil, err
	}

	t.meter = t.meterProvider.Meter(instrumentationName)
	if err := t.init(t.meter); err != nil {
		return nil, errors.Join(err, t.shutdown(ctx))
	}
	return t, nil
}

func (t *Telemetry) buildSDK(ctx context.Context, service, version string, envAttrs []attribute.KeyValue, getenv func(string) string, cfg setupConfig, reg *prometheus.Registry) (err error) {
	res, err := newResource(ctx, service, version, envAttrs, getenv)
	if err != nil {
		return err
	}

	// Everything built so far is shut down if a later step fails.
	var cleanup []func(context.Context) error
	defer func() {
		if err != nil {
			for _, f := range cleanup {
				err = errors.Join(err, f(ctx))
			}
		}
	}()

	spanExporters, err := newSpanExporters(ctx, getenv, cfg.console)
	if err != nil {
		return err
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range spanExporters {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(e))
	}
	for _, p := range cfg.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	cleanup = append(cleanup, tp.Shutdown)

	promExporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		// Every series carries service_name, so dashboards need not know
		// how Prometheus names its scrape jobs.
		otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(semconv.ServiceNameKey)),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return fmt.Errorf("create prometheus exporter: %w", err)
	}
	readers, err := newMetricReaders(ctx, getenv, cfg.console)
	if err != nil {
		return err
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	for _, r := range readers {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mpOpts...)

	t.tracerProvider, t.meterProvider = tp, mp
	t.shutdown = func(ctx context.Context) error {
		// Spans first: the last spans are worth more than the last metrics.
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	return nil
}

// newResource describes the process: service.name and service.version, the
// attributes of OTEL_RESOURCE_ATTRIBUTES, the host name and the SDK.
func newResource(ctx context.Context, service, version string, envAttrs []attribute.KeyValue, getenv func(string) string) (*resource.Resource, error) {
	var defaults []attribute.KeyValue
	if version != "" {
		defaults = append(defaults, semconv.ServiceVersion(version))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		// Later attributes win: the version passed in < OTEL_RESOURCE_ATTRIBUTES.
		resource.WithAttributes(defaults...),
		resource.WithAttributes(envAttrs...),
		resource.WithAttributes(semconv.ServiceName(serviceName(service, envAttrs, getenv))),
	)
	if err != nil {
		return nil, fmt.Errorf("build resource: %w", err)
	}
	return res, nil
}

// serviceName is OTEL_SERVICE_NAME, else service.name in
// OTEL_RESOURCE_ATTRIBUTES, else service.
func serviceName(service string, envAttrs []attribute.KeyValue, getenv func(string) string) string {
	if name := strings.TrimSpace(getenv(envServiceName)); name != "" {
		return name
	}
	for _, kv := range envAttrs {
		if kv.Key == semconv.ServiceNameKey && kv.Value.AsString() != "" {
			return kv.Value.AsString()
		}
	}
	return service
}

// parseResourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: comma-separated
// key=value pairs whose values are percent-encoded.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", envResourceAttributes, pair)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: value of %s: %w", envResourceAttributes, k, err)
		}
		attrs = append(attrs, attribute.String(k, val))
	}
	return attrs, nil
}

// exporterNames reads a comma-separated OTEL_*_EXPORTER list, or def when it
// is unset. "none" contributes no exporter.
func exporterNames(getenv func(string) string, key, def string) []string {
	v := strings.TrimSpace(getenv(key))
	if v == "" {
		v = def
	}
	var names []string
	for name := range strings.SplitSeq(v, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "" && name != "none" {
			names = append(names, name)
		}
	}
	return names
}

// defaultTracesExporter is otlp when an OTLP endpoint is configured, else
// none.
func defaultTracesExporter(getenv func(string) string) string {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		return "otlp"
	}
	return "none"
}

// otlpProtocol returns the OTLP protocol of a signal: its own variable, else
// the common one, else http/protobuf.
func otlpProtocol(getenv func(string) string, signalKey string) (string, error) {
	proto := strings.TrimSpace(getenv(signalKey))
	if proto == "" {
		proto = strings.TrimSpace(getenv(envOTLPProtocol))
	}
	switch proto {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	default:
		return "", fmt.Errorf("%s: unsupported OTLP protocol %q (http/protobuf or grpc)", signalKey, proto)
	}
}

func newSpanExporters(ctx context.Context, getenv func(string) string, console io.Writer) ([]sdktrace.SpanExporter, error) {
	var exporters []sdktrace.SpanExporter
	for _, name := range exporterNames(getenv, envTracesExporter, defaultTracesExporter(getenv)) {
		var (
			e   sdktrace.SpanExporter
			err error
		)
		switch name {
		case "otlp":
			var proto string
			if proto, err = otlpProtocol(getenv, envOTLPTracesProtocol); err != nil {
				break
			}
			if proto == "grpc" {
				e, err = otlptracegrpc.New(ctx)
			} else {
				e, err = otlptracehttp.New(ctx)
			}
		case "console":
			e, err = stdouttrace.New(stdouttrace.WithWriter(console))
		default:
			err = fmt.Errorf("%s: unsupported exporter %q (otlp, console or none)", envTracesExporter, name)
		}
		if err != nil {
			for _, built := range exporters {
				err = errors.Join(err, built.Shutdown(ctx))
			}
			return nil, fmt.Errorf("create span exporter: %w", err)
		}
		exporters = append(exporters, e)
	}
	return exporters, nil
}

// newMetricReaders returns the push readers OTEL_METRICS_EXPORTER asks for
// beside the Prometheus reader, which is always there. The specification's
// default is otlp; here it is prometheus, because Prometheus scrapes the
// services and the local Jaeger takes no metrics.
func newMetricReaders(ctx context.Context, getenv func(string) string, console io.Writer) ([]sdkmetric.Reader, error) {
	var readers []sdkmetric.Reader
	for _, name := range exporterNames(getenv, envMetricsExporter, "prometheus") {
		var (
			e   sdkmetric.Exporter
			err error
		)
		switch name {
		case "prometheus":
			continue
		case "otlp":
			var proto string
			if proto, err = otlpProtocol(getenv, envOTLPMetricsProto); err != nil {
				break
			}
			if proto == "grpc" {
				e, err = otlpmetricgrpc.New(ctx)
			} else {
				e, err = otlpmetrichttp.New(ctx)
			}
		case "console":
			e, err = stdoutmetric.New(stdoutmetric.WithWriter(console))
		default:
			err = fmt.Errorf("%s: unsupported exporter %q (prometheus, otlp, console or none)", envMetricsExporter, name)
		}
		if err != nil {
			for _, built := range readers {
				err = errors.Join(err, built.Shutdown(ctx))
			}
			return nil, fmt.Errorf("create metric exporter: %w", err)
		}
		readers = append(readers, sdkmetric.NewPeriodicReader(e))
	}
	return readers, nil
}

// MetricsHandler serves the process's metrics in the Prometheus exposition
// format: orderflow's and the instrumentation's OpenTelemetry metrics, and
// the Go runtime and process collectors. Mount it at /metrics.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.metrics
}

// Shutdown flushes and stops the tracer and meter providers: pending spans
// are exported, push exporters send their last metrics. Only the first call
// does anything; later calls return its result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		if err := t.shutdown(ctx); err != nil {
			t.shutdownErr = fmt.Errorf("shut down telemetry: %w", err)
		}
	})
	return t.shutdownErr
}

// TracerProvider returns the tracer provider (a no-op one when the SDK is
// disabled).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tracerProvider
}

// MeterProvider returns the meter provider (a no-op one when the SDK is
// disabled).
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.meterProvider
}

// Propagator returns the W3C trace context and baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return propagation.NewCompositeTextMapPropagator()
	}
	return t.propagator
}

// HTTPMiddleware is HTTPMiddleware(service) over t's providers, or, with the
// SDK disabled, HTTPPropagation alone: otelhttp over no-op providers still
// builds every span and metric attribute of every request (about two thirds
// of the root handler's own cost, BenchmarkHandler in pkg/platform), for
// spans nobody records and metrics nobody reads.
func (t *Telemetry) HTTPMiddleware(service string) func(http.Handler) http.Handler {
	if t.disabled {
		return HTTPPropagation(t.propagator)
	}
	return HTTPMiddleware(service, t.Options()...)
}

// Options returns the options that make this package's instrumentation use
// t's providers and propagator rather than the global ones. Nil returns no
// options: the globals.
func (t *Telemetry) Options() []Option {
	if t == nil {
		return nil
	}
	return []Option{
		WithTracerProvider(t.tracerProvider),
		WithMeterProvider(t.meterProvider),
		WithPropagator(t.propagator),
	}
}
