package observability_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/observability"
)

func TestTelemetry_metrics_move_by_the_recorded_amounts(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	p := newPipeline(t, tel)
	p.placeOrder(t, "o-ok", 0)
	p.placeOrder(t, "o-retried", maxRetries)
	p.placeOrder(t, "o-poisoned", maxRetries+1)
	p.stop(t)

	require.NoError(t, tel.RegisterOutboxBacklog(func(context.Context) (int64, time.Duration, error) {
		return 7, 90 * time.Second, nil
	}))
	require.NoError(t, tel.RegisterPoisonDepth(func(context.Context) (int64, error) { return 4, nil }))

	families := scrape(t, tel.MetricsHandler())
	handler := map[string]string{
		"service_name":                  "orders",
		"messaging_system":              "rabbitmq",
		"messaging_consumer_group_name": handlerName,
		"messaging_destination_name":    eventTopic,
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := make(map[string]string, len(base)+len(kv)/2)
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"outbox backlog", "orderflow_outbox_backlog", nil, 7},
		{"outbox oldest age", "orderflow_outbox_oldest_age_seconds", nil, 90},
		{"poison depth", "orderflow_poison_depth", nil, 4},
		{"messages handled", "orderflow_messages_processed_total", with(handler, "outcome", "success"), 2},
		{"messages given up", "orderflow_messages_processed_total", with(handler, "outcome", "failure"), 1},
		{"retries: 2 for o-retried, 2 for o-poisoned", "orderflow_messages_retried_total", handler, 2 * maxRetries},
		{"messages poisoned", "orderflow_messages_poisoned_total", handler, 1},
		{"handling durations", "messaging_process_duration_seconds", handler, 3},
		{"failed handling durations", "messaging_process_duration_seconds", with(handler, "outcome", "failure"), 1},
		{
			"events forwarded", "messaging_client_sent_messages_total",
			map[string]string{"messaging_operation_name": "send", "messaging_system": "rabbitmq", "messaging_destination_name": eventTopic},
			3,
		},
		{"poison publishes", "messaging_client_sent_messages_total", map[string]string{"messaging_destination_name": poisonTopic}, 1},
		{"forward lag observations", "orderflow_outbox_forward_lag_seconds", map[string]string{"messaging_destination_name": eventTopic}, 3},
		{"HTTP requests by route, method and status", "http_server_request_duration_seconds", map[string]string{
			"service_name": "orders", "http_route": "/orders/{id}", "http_request_method": "POST", "http_response_status_code": "202",
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.NotEmpty(t, find(families, tt.family, tt.labels), "no %s%v", tt.family, tt.labels)
			assert.InDelta(t, tt.want, sum(families, tt.family, tt.labels), 1e-9)
		})
	}

	t.Run("failures carry error.type", func(t *testing.T) {
		t.Parallel()
		m := find(families, "orderflow_messages_processed_total", with(handler, "outcome", "failure"))
		require.Len(t, m, 1)
		var errorType string
		for _, l := range m[0].GetLabel() {
			if l.GetName() == "error_type" {
				errorType = l.GetValue()
			}
		}
		assert.NotEmpty(t, errorType)
	})
	t.Run("runtime collectors", func(t *testing.T) {
		t.Parallel()
		assert.Contains(t, families, "go_goroutines")
		assert.Contains(t, families, "process_cpu_seconds_total")
	})
}

func TestTelemetry_failing_gauge_callback_leaves_only_its_gauges_out(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	require.NoError(t, tel.RegisterOutboxBacklog(func(context.Context) (int64, time.Duration, error) {
		return 0, 0, errors.New("database down")
	}))
	require.NoError(t, tel.RegisterPoisonDepth(func(context.Context) (int64, error) { return 1, nil }))

	families := scrape(t, tel.MetricsHandler())
	assert.NotContains(t, families, "orderflow_outbox_backlog")
	assert.NotContains(t, families, "orderflow_outbox_oldest_age_seconds")
	assert.InDelta(t, 1.0, sum(families, "orderflow_poison_depth", nil), 0)
}

func TestTelemetry_gauge_callback_gets_a_deadline(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	require.NoError(t, tel.RegisterPoisonDepth(func(ctx context.Context) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			return 0, errors.New("no deadline")
		}
		return 1, nil
	}))
	assert.InDelta(t, 1.0, sum(scrape(t, tel.MetricsHandler()), "orderflow_poison_depth", nil), 0)
}

func TestTelemetry_nil_records_nothing(t *testing.T) {
	t.Parallel()
	var tel *observability.Telemetry
	ctx := t.Context()
	require.NoError(t, tel.RegisterOutboxBacklog(nil))
	require.NoError(t, tel.RegisterPoisonDepth(nil))
	require.NoError(t, tel.Shutdown(ctx))
	assert.Nil(t, tel.Options())
	_, span := tel.TracerProvider().Tracer("t").Start(ctx, "s")
	assert.False(t, span.IsRecording())

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

// failing is a publisher whose first publish to a topic fails.
type failing struct{ seen map[string]bool }

func (f *failing) Publish(topic string, _ ...*message.Message) error {
	if !f.seen[topic] {
		f.seen[topic] = true
		return errors.New("channel closed")
	}
	return nil
}
func (*failing) Close() error { return nil }

// TestForwarderPublisher_metrics_per_topic publishes to two topics, the
// first attempt at each failing, and expects each topic's sends, failed
// and not, and its lag under that topic's own attributes.
func TestForwarderPublisher_metrics_per_topic(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	pub := observability.ForwarderPublisher(&failing{seen: map[string]bool{}}, tel.Options()...)
	occurred := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	for _, topic := range []string{"events.A", "events.B", "events.A", "events.B", "events.A"} {
		msg := message.NewMessage(watermill.NewUUID(), []byte("{}"))
		msg.Metadata.Set("occurred_at", occurred)
		_ = pub.Publish(topic, msg)
	}
	families := scrape(t, tel.MetricsHandler())
	for _, tt := range []struct {
		topic      string
		sent, lags float64
	}{{"events.A", 2, 2}, {"events.B", 1, 1}} {
		ok := map[string]string{"messaging_operation_name": "send", "messaging_system": "rabbitmq", "messaging_destination_name": tt.topic}
		sent := find(families, "messaging_client_sent_messages_total", ok)
		var succeeded float64
		for _, m := range sent {
			if !hasLabel(m, "error_type") {
				succeeded += m.GetCounter().GetValue()
			}
		}
		assert.InDelta(t, tt.sent, succeeded, 1e-9, tt.topic)
		assert.InDelta(t, tt.sent+1, sum(families, "messaging_client_sent_messages_total", ok), 1e-9, "%s: one failed send as well", tt.topic)
		lag := find(families, "orderflow_outbox_forward_lag_seconds", map[string]string{"messaging_system": "rabbitmq", "messaging_destination_name": tt.topic})
		require.Len(t, lag, 1, tt.topic)
		assert.Equal(t, uint64(tt.lags), lag[0].GetHistogram().GetSampleCount(), "%s: a lag for each confirmed send", tt.topic)
		assert.GreaterOrEqual(t, lag[0].GetHistogram().GetSampleSum(), tt.lags, "%s: each a second or more", tt.topic)
	}
}

func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return true
		}
	}
	return false
}
