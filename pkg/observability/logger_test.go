package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/observability"
)

func TestNewLogger_adds_correlation_and_trace_ids(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := observability.NewLogger(&buf, "orders", slog.LevelInfo)

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	ctx = observability.WithCorrelationID(ctx, "corr-1")
	log.With("k", "v").InfoContext(ctx, "order placed", "order_id", "o-1")

	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	assert.Equal(t, "orders", rec["service"])
	assert.Equal(t, "corr-1", rec["correlation_id"])
	assert.Equal(t, sc.TraceID().String(), rec["trace_id"])
	assert.Equal(t, sc.SpanID().String(), rec["span_id"])
	assert.Equal(t, "o-1", rec["order_id"])
	assert.Equal(t, "v", rec["k"])
}
