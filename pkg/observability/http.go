package observability

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// untracedPaths are the operational endpoints: Prometheus scrapes /metrics
// and the orchestrator polls the health checks every few seconds, which would
// bury the requests worth looking at.
var untracedPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// HTTPMiddleware traces and measures HTTP requests. Install it on the chi
// router, first, before any other middleware:
//
//	r := chi.NewRouter()
//	r.Use(observability.HTTPMiddleware("orders"), httpkit.Recoverer(log), httpkit.CorrelationID)
//
// It is otelhttp's handler with the chi route template as the span name and
// the http.route attribute: a SERVER span "POST /orders/{id}" that continues
// the caller's W3C trace context, and otelhttp's http.server.request.duration
// histogram by route, method and status code. chi knows the route only after
// routing, so the middleware names the span when the handler returns; it
// also tags the span with the response's X-Correlation-ID. It must run inside
// chi (r.Use, not around the router): chi recycles its routing context when
// the router returns. service names the server (server.address), which keeps
// the metrics' labels independent of the Host header clients send.
// /healthz, /readyz and /metrics are neither traced nor measured.
func HTTPMiddleware(service string, opts ...Option) func(http.Handler) http.Handler {
	c := newConfig(opts)
	traced := otelhttp.NewMiddleware("http.server",
		otelhttp.WithTracerProvider(c.tracerProvider),
		otelhttp.WithMeterProvider(c.meterProvider),
		otelhttp.WithPropagators(c.propagator),
		otelhttp.WithServerName(service),
		otelhttp.WithFilter(func(r *http.Request) bool { return !untracedPaths[r.URL.Path] }),
	)
	return func(next http.Handler) http.Handler { return traced(nameRoute(next)) }
}

// HTTPPropagation continues the caller's W3C trace context and nothing else:
// the request's context carries the remote span context, so the events the
// request writes name the caller's trace, as they do when HTTPMiddleware's
// span continues it. No span, no metric.
func HTTPPropagation(p propagation.TextMapPropagator) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// nameRoute runs right inside otelhttp's handler. It sets the request's
// Pattern to chi's route template once chi has routed: otelhttp then renames
// its span "METHOD template" and puts http.route on its metrics. r is
// otelhttp's own copy of the request, which otelhttp reads after the handler
// returned.
func nameRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if id := w.Header().Get(CorrelationHeader); id != "" {
			span.SetAttributes(CorrelationIDKey.String(id))
		}
		rctx := chi.RouteContext(r.Context())
		if rctx == nil {
			return
		}
		if pattern := rctx.RoutePattern(); pattern != "" {
			r.Pattern = pattern
			span.SetAttributes(semconv.HTTPRoute(pattern))
		}
	})
}
