package observability_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/observability"
)

// newHTTPService is a service's chi router with the middleware order of
// platform.Handler.
func newHTTPService(tel *observability.Telemetry) http.Handler {
	r := chi.NewRouter()
	r.Use(observability.HTTPMiddleware("orders", tel.Options()...), correlate)
	ok := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }
	}
	r.Post("/orders", ok(http.StatusCreated))
	r.Get("/orders/{id}", ok(http.StatusOK))
	r.Get("/boom", ok(http.StatusInternalServerError))
	r.Route("/invoices", func(r chi.Router) { r.Get("/{id}", ok(http.StatusOK)) })
	r.Get("/healthz", ok(http.StatusOK))
	r.Handle("/metrics", tel.MetricsHandler())
	return r
}

func TestHTTPMiddleware_names_spans_and_metrics_by_route(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		path       string
		wantSpan   string // "" for no span
		wantRoute  string
		wantStatus int
	}{
		{"route without parameters", http.MethodPost, "/orders", "POST /orders", "/orders", http.StatusCreated},
		{"route template, not the path", http.MethodGet, "/orders/o-42", "GET /orders/{id}", "/orders/{id}", http.StatusOK},
		{"sub-router", http.MethodGet, "/invoices/i-7", "GET /invoices/{id}", "/invoices/{id}", http.StatusOK},
		{"server error", http.MethodGet, "/boom", "GET /boom", "/boom", http.StatusInternalServerError},
		{"unknown route: the method alone", http.MethodGet, "/nowhere/x", "GET", "", http.StatusNotFound},
		{"health checks are not traced", http.MethodGet, "/healthz", "", "", http.StatusOK},
		{"metrics scrapes are not traced", http.MethodGet, "/metrics", "", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, rec := newTelemetry(t)
			req := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil)
			req.Header.Set(observability.CorrelationHeader, correlationID)
			resp := httptest.NewRecorder()
			newHTTPService(tel).ServeHTTP(resp, req)
			require.Equal(t, tt.wantStatus, resp.Code)

			spans := rec.Ended()
			if tt.wantSpan == "" {
				assert.Empty(t, spans)
				assert.NotContains(t, scrape(t, tel.MetricsHandler()), "http_server_request_duration_seconds")
				return
			}
			require.Len(t, spans, 1)
			s := spans[0]
			assert.Equal(t, tt.wantSpan, s.Name())
			assert.Equal(t, trace.SpanKindServer, s.SpanKind())
			a := attrs(s)
			assert.Equal(t, tt.wantRoute, a["http.route"])
			assert.Equal(t, correlationID, a["orderflow.correlation_id"])
			if tt.wantStatus >= 500 {
				assert.Equal(t, codes.Error, s.Status().Code)
			}

			labels := map[string]string{"http_request_method": tt.method, "server_address": "orders", "service_name": "orders"}
			if tt.wantRoute != "" {
				labels["http_route"] = tt.wantRoute
			}
			m := find(scrape(t, tel.MetricsHandler()), "http_server_request_duration_seconds", labels)
			require.Len(t, m, 1)
			assert.Equal(t, uint64(1), m[0].GetHistogram().GetSampleCount())
			if tt.wantRoute == "" {
				for _, l := range m[0].GetLabel() {
					assert.NotEqual(t, "http_route", l.GetName(), "an unknown route adds no http_route")
				}
			}
		})
	}
}

func TestHTTPMiddleware_continues_the_callers_trace(t *testing.T) {
	t.Parallel()
	tel, rec := newTelemetry(t)
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/orders/o-1", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	newHTTPService(tel).ServeHTTP(httptest.NewRecorder(), req)

	require.Len(t, rec.Ended(), 1)
	s := rec.Ended()[0]
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", s.SpanContext().TraceID().String())
	assert.Equal(t, "b7ad6b7169203331", s.Parent().SpanID().String())
	assert.True(t, s.Parent().IsRemote())
}

func TestTelemetry_HTTPMiddleware_with_the_sdk_disabled_continues_the_trace_and_measures_nothing(t *testing.T) {
	t.Parallel()
	tel, err := observability.New(t.Context(), "orders", "1.2.3", env("OTEL_SDK_DISABLED", "true"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })

	var got trace.SpanContext
	r := chi.NewRouter()
	r.Use(tel.HTTPMiddleware("orders"))
	r.Post("/orders", func(w http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context())
		w.WriteHeader(http.StatusCreated)
	})
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/orders", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp := httptest.NewRecorder()
	r.ServeHTTP(resp, req)

	require.Equal(t, http.StatusCreated, resp.Code)
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", got.TraceID().String())
	assert.Equal(t, "b7ad6b7169203331", got.SpanID().String())
	assert.True(t, got.IsRemote(), "the caller's span, not a new one")
	for name := range scrape(t, tel.MetricsHandler()) {
		assert.NotContains(t, name, "http_server", "no HTTP metric with the SDK disabled")
	}
}
