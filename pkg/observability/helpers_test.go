package observability_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderflow/orderflow/pkg/observability"
)

// env is a getenv over kv pairs.
func env(kv ...string) func(string) string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// newTelemetry builds a Telemetry for service "orders" that exports no spans
// but records them in the returned recorder, and shuts it down when the test
// ends. It installs nothing globally, so tests using it run in parallel.
func newTelemetry(tb testing.TB, kv ...string) (*observability.Telemetry, *tracetest.SpanRecorder) {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	kv = append([]string{"OTEL_TRACES_EXPORTER", "none"}, kv...)
	tel, err := observability.New(tb.Context(), "orders", "1.2.3", env(kv...), observability.WithSpanProcessor(rec))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, tel.Shutdown(context.WithoutCancel(tb.Context()))) })
	return tel, rec
}

// scrape fetches h's Prometheus exposition and parses it.
func scrape(tb testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(tb.Context(), http.MethodGet, "/metrics", nil))
	require.Equal(tb, http.StatusOK, rec.Code, rec.Body.String())
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(rec.Body)
	require.NoError(tb, err)
	return families
}

// find returns the metrics of family name whose labels include labels.
func find(families map[string]*dto.MetricFamily, name string, labels map[string]string) []*dto.Metric {
	f, ok := families[name]
	if !ok {
		return nil
	}
	var found []*dto.Metric
	for _, m := range f.GetMetric() {
		have := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
				break
			}
		}
		if match {
			found = append(found, m)
		}
	}
	return found
}

// sum adds the values of the metrics of family name that carry labels:
// counter and gauge values, histogram counts.
func sum(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var total float64
	for _, m := range find(families, name, labels) {
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// spanNamed returns the one ended span called name.
func spanNamed(tb testing.TB, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	tb.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(tb, found, 1, "spans named %q among %v", name, spanNames(spans))
	return found[0]
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name()
	}
	return names
}

// attrs returns a span's attributes as strings.
func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := make(map[string]string)
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// resourceAttrs returns the attributes of a span's resource as strings.
func resourceAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := make(map[string]string)
	for _, kv := range s.Resource().Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// childOf reports whether child's parent is parent.
func childOf(child, parent sdktrace.ReadOnlySpan) bool {
	return child.Parent().SpanID() == parent.SpanContext().SpanID() &&
		child.SpanContext().TraceID() == parent.SpanContext().TraceID()
}
