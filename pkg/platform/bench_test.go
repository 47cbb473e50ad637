package platform_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/platform"
)

// BenchmarkHandler is what the root handler's middleware costs per request,
// around a route that answers at once: chi alone, then the stack without
// telemetry (recoverer, correlation id), then with OpenTelemetry off
// (OTEL_SDK_DISABLED=true: the caller's trace context alone), then on as
// deployed (otelhttp, 10 % of traces sampled, spans exported nowhere). The
// difference between two lines is what a layer adds.
func BenchmarkHandler(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	health := httpkit.Health{Ping: func(context.Context) error { return nil }}
	routes := func(r chi.Router) {
		r.Post("/orders", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":"01a21582-c08e-72c6-9a41-487ed5c67121"}`)
		})
	}
	telemetry := func(b *testing.B, sdkDisabled string) *observability.Telemetry {
		b.Helper()
		tel, err := observability.New(b.Context(), "orders", "1.2.3", env(map[string]string{
			"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_SDK_DISABLED": sdkDisabled,
		}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tel.Shutdown(context.WithoutCancel(b.Context())) })
		return tel
	}

	b.Run("chi alone", func(b *testing.B) {
		r := chi.NewRouter()
		routes(r)
		serve(b, r)
	})
	b.Run("stack without telemetry", func(b *testing.B) {
		serve(b, platform.Handler(log, nil, "orders", health, routes))
	})
	b.Run("stack, OTel off", func(b *testing.B) {
		tel := telemetry(b, "true")
		serve(b, platform.Handler(log, tel, "orders", health, routes))
	})
	b.Run("stack, OTel on, 10 % sampled", func(b *testing.B) {
		// The trace SDK reads its sampler from the process's environment.
		b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
		b.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
		tel := telemetry(b, "false")
		serve(b, platform.Handler(log, tel, "orders", health, routes))
	})
}

// serve sends h a POST /orders as Kong forwards it (no trace context, so the
// sampler decides), in memory, until the benchmark ends.
func serve(b *testing.B, h http.Handler) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/orders", http.NoBody)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(httpkit.ConsumerHeader, "c-12345")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
