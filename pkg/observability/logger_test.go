package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
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

func TestWatermillLogger_logs_at_and_above_the_loggers_level(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	wlog := observability.WatermillLogger(observability.NewLogger(&buf, "orders", slog.LevelDebug)).
		With(watermill.LogFields{"handler_name": "h"})

	wlog.Trace("received", watermill.LogFields{"message_uuid": "m-0"})
	wlog.Debug("acked", watermill.LogFields{"message_uuid": "m-1"})
	wlog.Info("started", nil)
	wlog.Error("failed", errors.New("boom"), watermill.LogFields{"message_uuid": "m-2"})

	var recs []map[string]any
	for line := range bytes.Lines(buf.Bytes()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(line, &rec))
		assert.Equal(t, "h", rec["handler_name"], "With's fields are on every record")
		recs = append(recs, rec)
	}
	require.Len(t, recs, 3, "trace is below debug: %s", buf.String())
	assert.Equal(t, []any{"DEBUG", "acked", "m-1"}, []any{recs[0]["level"], recs[0]["msg"], recs[0]["message_uuid"]})
	assert.Equal(t, []any{"DEBUG", "started"}, []any{recs[1]["level"], recs[1]["msg"]}, "Watermill's info lines are debug lines")
	assert.Equal(t, []any{"ERROR", "failed", "boom", "m-2"}, []any{recs[2]["level"], recs[2]["msg"], recs[2]["error"], recs[2]["message_uuid"]})
}

func TestWatermillLogger_drops_records_below_the_level_without_allocating(t *testing.T) { //nolint:paralleltest // testing.AllocsPerRun refuses parallel tests
	var buf bytes.Buffer
	wlog := observability.WatermillLogger(observability.NewLogger(&buf, "orders", slog.LevelInfo))
	fields := watermill.LogFields{"message_uuid": "m-1", "handler_name": "h"}
	allocs := testing.AllocsPerRun(100, func() {
		wlog.Trace("received", fields)
		wlog.Debug("acked", fields)
		wlog.Info("handler started", fields)
	})
	assert.Zero(t, allocs, "watermill.NewSlogLogger alone allocates the fields' slog arguments first")
	assert.Zero(t, buf.Len())
}
