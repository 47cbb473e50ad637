package observability_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/observability"
)

func TestPipeline_one_trace_from_http_request_to_handler(t *testing.T) {
	t.Parallel()
	tel, rec := newTelemetry(t)
	p := newPipeline(t, tel)

	got := p.placeOrder(t, "o-1", 0)
	p.stop(t)
	spans := rec.Ended()

	server := spanNamed(t, spans, "POST /orders/{id}")
	create := spanNamed(t, spans, "create events.OrderPlaced")
	send := spanNamed(t, spans, "send events.OrderPlaced")
	process := spanNamed(t, spans, "process events.OrderPlaced")
	work := spanNamed(t, spans, "issue invoice")

	assert.False(t, server.Parent().IsValid(), "the HTTP request starts the trace")
	for _, link := range []struct {
		name          string
		child, parent string
		childOf       bool
	}{
		{"outbox append under the request", create.Name(), server.Name(), childOf(create, server)},
		{"forwarder send under the outbox append", send.Name(), create.Name(), childOf(send, create)},
		{"consumer under the forwarder send", process.Name(), send.Name(), childOf(process, send)},
		{"handler work under the consumer", work.Name(), process.Name(), childOf(work, process)},
	} {
		assert.True(t, link.childOf, "%s: %q is not a child of %q", link.name, link.child, link.parent)
	}
	assert.Equal(t, process.SpanContext(), got.span, "the handler's context carries the consumer span")
	assert.Equal(t, correlationID, got.correlationID, "the handler's context carries the correlation id")

	assert.Equal(t, trace.SpanKindServer, server.SpanKind())
	assert.Equal(t, trace.SpanKindProducer, create.SpanKind())
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())

	assert.Subset(t, attrs(server), map[string]string{
		"http.route": "/orders/{id}", "http.request.method": "POST", "http.response.status_code": "202",
		"orderflow.correlation_id": correlationID,
	})
	eventID := attrs(process)["messaging.message.id"]
	assert.NotEmpty(t, eventID)
	for _, tt := range []struct {
		span   string
		opType string
		extra  map[string]string
	}{
		{create.Name(), "create", nil},
		{send.Name(), "send", nil},
		{process.Name(), "process", map[string]string{"messaging.consumer.group.name": handlerName}},
	} {
		s := spanNamed(t, spans, tt.span)
		want := map[string]string{
			"messaging.system":           "rabbitmq",
			"messaging.operation.type":   tt.opType,
			"messaging.operation.name":   tt.opType,
			"messaging.destination.name": eventTopic,
			"messaging.message.id":       eventID,
			"orderflow.correlation_id":   correlationID,
		}
		for k, v := range tt.extra {
			want[k] = v
		}
		assert.Subset(t, attrs(s), want, tt.span)
		assert.Equal(t, codes.Unset, s.Status().Code, tt.span)
	}
	assert.Equal(t, "orders", resourceAttrs(process)["service.name"])
}

func TestPipeline_failed_attempts_and_poison_show_on_the_consumer_span(t *testing.T) {
	t.Parallel()
	tel, rec := newTelemetry(t)
	p := newPipeline(t, tel)

	p.placeOrder(t, "o-retried", maxRetries)
	p.placeOrder(t, "o-poisoned", maxRetries+1)
	p.stop(t)
	spans := rec.Ended()

	var retried, poisoned []string
	for _, s := range spans {
		if s.Name() != "process events.OrderPlaced" {
			continue
		}
		var exceptions int
		for _, e := range s.Events() {
			if e.Name == "exception" {
				exceptions++
			}
		}
		switch s.Status().Code {
		case codes.Error:
			poisoned = append(poisoned, s.Name())
			assert.Equal(t, maxRetries+1, exceptions, "every attempt failed")
			assert.Contains(t, s.Status().Description, errBrokenDatabase.Error())
			send := spanNamed(t, spans, "send "+poisonTopic)
			assert.True(t, childOf(send, s), "the poison publish is a child of the consumer span")
		default:
			retried = append(retried, s.Name())
			assert.Equal(t, maxRetries, exceptions, "the failed attempts before the success")
		}
	}
	assert.Len(t, retried, 1)
	assert.Len(t, poisoned, 1)
}

func TestInjectMessage_and_ExtractMessage_carry_trace_context_and_baggage(t *testing.T) {
	t.Parallel()
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
	})
	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	ctx := baggage.ContextWithBaggage(trace.ContextWithSpanContext(t.Context(), sc), bag)

	msg := message.NewMessage("m-1", nil)
	observability.InjectMessage(ctx, msg, observability.WithPropagator(prop))
	assert.Equal(t, "00-01000000000000000000000000000000-0200000000000000-01", msg.Metadata.Get("traceparent"))
	assert.Equal(t, "tenant=acme", msg.Metadata.Get("baggage"))

	got := observability.ExtractMessage(context.Background(), msg, observability.WithPropagator(prop))
	assert.Equal(t, sc.WithRemote(true), trace.SpanContextFromContext(got))
	assert.Equal(t, "acme", baggage.FromContext(got).Member("tenant").Value())
}

func TestTracingPublisher_records_publish_errors(t *testing.T) {
	t.Parallel()
	tel, rec := newTelemetry(t)
	pub := observability.TracingPublisher(failingPublisher{}, tel.Options()...)

	msg := message.NewMessage("m-1", []byte("{}"))
	err := pub.Publish("events.OrderPlaced", msg)
	require.ErrorIs(t, err, errBrokerDown)

	s := spanNamed(t, rec.Ended(), "send events.OrderPlaced")
	assert.Equal(t, codes.Error, s.Status().Code)
	assert.False(t, s.Parent().IsValid(), "a message without trace context starts a trace")
	assert.Equal(t, s.SpanContext().TraceID().String(), traceIDOf(msg.Metadata.Get("traceparent")),
		"the message carries the send span's context")
	require.NoError(t, pub.Close())
}

var errBrokerDown = errors.New("broker down")

type failingPublisher struct{}

func (failingPublisher) Publish(string, ...*message.Message) error { return errBrokerDown }
func (failingPublisher) Close() error                              { return nil }

// traceIDOf returns the trace id of a traceparent header.
func traceIDOf(traceparent string) string {
	if len(traceparent) < 35 {
		return ""
	}
	return traceparent[3:35]
}
