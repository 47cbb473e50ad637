package observability_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderflow/orderflow/pkg/observability"
)

// discard is a publisher that accepts every message at once.
type discard struct{}

func (discard) Publish(string, ...*message.Message) error { return nil }
func (discard) Close() error                              { return nil }

// BenchmarkForwarderPublisher is what the forwarder's instrumentation costs
// per event on top of the publish itself: the PRODUCER span (10 % sampled,
// as deployed), the trace context written into the message, the sent
// counter and the forwarding lag histogram.
func BenchmarkForwarderPublisher(b *testing.B) {
	// The trace SDK reads its sampler from the process's environment.
	b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	b.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
	tel, err := observability.New(b.Context(), "orders", "1.2.3", env("OTEL_TRACES_EXPORTER", "none"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.WithoutCancel(b.Context())) })
	pub := observability.ForwarderPublisher(discard{}, tel.Options()...)
	occurred := time.Now().UTC().Format(time.RFC3339Nano)
	b.ReportAllocs()
	for b.Loop() {
		msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"x"}`))
		msg.Metadata.Set("occurred_at", occurred)
		if err := pub.Publish("events.OrderPlaced", msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerMetrics is what the handler metrics cost per message
// handled (its duration and outcome), around a handler that does nothing.
func BenchmarkHandlerMetrics(b *testing.B) {
	tel, err := observability.New(b.Context(), "invoices", "1.2.3", env("OTEL_TRACES_EXPORTER", "none"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.WithoutCancel(b.Context())) })
	h := observability.NewHandlerMetrics(tel.Options()...).Message(func(*message.Message) ([]*message.Message, error) {
		return nil, nil
	})
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		msg.SetContext(ctx) // each delivery starts afresh, as the router's do
		if _, err := h(msg); err != nil {
			b.Fatal(err)
		}
	}
}
