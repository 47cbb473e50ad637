package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestTelemetry_one_trace_per_order_across_both_services(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker, observability.WithSpanProcessor(rec))

	code, o, err := postOrderWith(t.Context(), s.orders.URL, "c-trace", `{"customer_id":"c-trace","amount":4242,"currency":"EUR"}`,
		map[string]string{"X-Correlation-ID": "corr-trace-1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	s.waitAllInvoiced(t, 1, 30*time.Second)

	// The last span of the flow is orders' processing of InvoiceIssued;
	// wait for it to end.
	var spans []sdktrace.ReadOnlySpan
	testkit.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		spans = rec.Ended()
		if find(spans, "process events.InvoiceIssued") == nil {
			return fmt.Errorf("%d spans, none processes InvoiceIssued yet", len(spans))
		}
		return nil
	})
	root := find(spans, "POST /orders")
	require.NotNil(t, root, "the HTTP server span")
	traceID := root.SpanContext().TraceID()
	chain := []struct {
		name string
		kind trace.SpanKind
	}{
		{"create events.OrderPlaced", trace.SpanKindProducer},   // orders: outbox append, in the request
		{"send events.OrderPlaced", trace.SpanKindProducer},     // orders: forwarder to RabbitMQ
		{"process events.OrderPlaced", trace.SpanKindConsumer},  // invoices: handler
		{"create events.InvoiceIssued", trace.SpanKindProducer}, // invoices: outbox append, in the handler
		{"send events.InvoiceIssued", trace.SpanKindProducer},   // invoices: forwarder
		{"process events.InvoiceIssued", trace.SpanKindConsumer},
	}
	prev := root
	for _, step := range chain {
		sp := find(spans, step.name)
		require.NotNil(t, sp, "span %q", step.name)
		assert.Equal(t, traceID, sp.SpanContext().TraceID(), "%s is in the order's trace", step.name)
		assert.Equal(t, step.kind, sp.SpanKind(), step.name)
		assert.True(t, isAncestor(spans, prev, sp), "%s descends from %s", step.name, prev.Name())
		prev = sp
	}
	for _, name := range []string{"send events.OrderPlaced", "process events.OrderPlaced"} {
		attrs := map[string]string{}
		for _, kv := range find(spans, name).Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		assert.Equal(t, "rabbitmq", attrs["messaging.system"], name)
		assert.Equal(t, "events.OrderPlaced", attrs["messaging.destination.name"], name)
		assert.NotEmpty(t, attrs["messaging.message.id"], name)
		assert.NotEmpty(t, attrs["messaging.operation.type"], name)
	}
	// The writes are in the trace too (bunotel's spans): the order's and the
	// invoice's INSERT under the request and the handler.
	for parent, name := range map[string]string{"POST /orders": "INSERT orders", "process events.OrderPlaced": "INSERT invoices"} {
		sp := find(spans, name)
		require.NotNil(t, sp, "span %q", name)
		assert.Equal(t, trace.SpanKindClient, sp.SpanKind(), name)
		assert.True(t, isAncestor(spans, find(spans, parent), sp), "%s descends from %s", name, parent)
	}
	var dbSpans int
	for _, sp := range spans {
		if sp.SpanContext().TraceID() == traceID && sp.SpanKind() == trace.SpanKindClient {
			dbSpans++
		}
	}
	assert.Positive(t, dbSpans, "query spans in the order's trace")
	assert.NotEmpty(t, o.ID)
}

func find(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, sp := range spans {
		if sp.Name() == name {
			return sp
		}
	}
	return nil
}

// isAncestor reports whether a is b's parent, or its parent's, and so on.
func isAncestor(spans []sdktrace.ReadOnlySpan, a, b sdktrace.ReadOnlySpan) bool {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byID[sp.SpanContext().SpanID()] = sp
	}
	for cur := b; cur != nil; {
		p := cur.Parent().SpanID()
		if p == a.SpanContext().SpanID() {
			return true
		}
		cur = byID[p]
	}
	return false
}

func TestTelemetry_metrics_count_a_flow(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	const n = 5
	for i := range n {
		code, _, err := postOrder(t.Context(), s.orders.URL, "c-metrics", int64(i+1))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, code)
	}
	s.waitAllInvoiced(t, n, 30*time.Second)

	testkit.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		om, im := scrape(t, s.orders.URL), scrape(t, s.invoices.URL)
		checks := []struct {
			fams   map[string]*dto.MetricFamily
			metric string
			labels map[string]string
			want   float64
		}{
			{om, "orderflow_orders_placed_total", nil, n},
			{im, "orderflow_invoices_issued_total", nil, n},
			{om, "orderflow_order_invoice_lag_seconds", nil, n}, // histogram count
			{om, "http_server_request_duration_seconds", map[string]string{"http_route": "/orders", "http_request_method": "POST", "http_response_status_code": "201"}, n},
			{im, "orderflow_messages_processed_total", map[string]string{"messaging_consumer_group_name": "invoices.IssueInvoiceOnOrderPlaced", "outcome": "success"}, n},
			{om, "orderflow_messages_processed_total", map[string]string{"messaging_consumer_group_name": "orders.MarkOrderInvoicedOnInvoiceIssued", "outcome": "success"}, n},
			{im, "messaging_process_duration_seconds", map[string]string{"messaging_consumer_group_name": "invoices.IssueInvoiceOnOrderPlaced"}, n},
			{om, "messaging_client_sent_messages_total", map[string]string{"messaging_destination_name": "events.OrderPlaced"}, n},
			{om, "orderflow_outbox_forward_lag_seconds", map[string]string{"messaging_destination_name": "events.OrderPlaced"}, n},
			{om, "orderflow_outbox_backlog", nil, 0},
			{im, "orderflow_poison_depth", nil, 0},
		}
		for _, c := range checks {
			got, ok := sum(c.fams, c.metric, c.labels)
			if !ok {
				return fmt.Errorf("%s%v not exported", c.metric, c.labels)
			}
			if got != c.want {
				return fmt.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
			}
		}
		if _, ok := om["go_goroutines"]; !ok {
			return fmt.Errorf("no Go runtime metrics")
		}
		return nil
	})
}

func scrape(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, baseURL+"/metrics", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// sum adds up a metric's samples whose labels include labels: the value of
// counters and gauges, the count of histograms.
func sum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	var total float64
	found := false
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total, found || strings.HasSuffix(name, "_backlog")
}
