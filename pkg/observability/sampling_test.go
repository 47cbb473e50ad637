package observability_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/orderflow/orderflow/pkg/observability"
)

// askedSampler samples nothing and keeps, per span name, the attributes
// it was given to decide on.
type askedSampler struct {
	mu    sync.Mutex
	asked map[string]map[string]string
}

func (s *askedSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	attrs := map[string]string{}
	for _, kv := range p.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	s.asked[p.Name] = attrs
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

func (*askedSampler) Description() string { return "asked" }

func (s *askedSampler) attrs(name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[name]
}

// TestMessageSpans_start_with_the_attributes_a_sampler_may_decide_on: the
// semantic conventions ask messaging spans for the system, the operation,
// the destination and the consumer group at creation, since a sampler may
// decide on them; the message's own attributes are for recorded spans only.
func TestMessageSpans_start_with_the_attributes_a_sampler_may_decide_on(t *testing.T) {
	t.Parallel()
	sampler := &askedSampler{asked: map[string]map[string]string{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	opts := []observability.Option{observability.WithTracerProvider(tp)}

	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	msg.Metadata.Set(middleware.CorrelationIDMetadataKey, "c-1")
	require.NoError(t, observability.ForwarderPublisher(broker, opts...).Publish("events.OrderPlaced", msg))

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(observability.ConsumeSpan(opts...))
	handled := make(chan struct{})
	router.AddConsumerHandler("invoices.Issue", "events.OrderPlaced", broker, func(*message.Message) error {
		close(handled)
		return nil
	})
	go func() { _ = router.Run(t.Context()) }()
	t.Cleanup(func() { _ = router.Close() })
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not handled")
	}

	common := map[string]string{"messaging.system": "rabbitmq", "messaging.destination.name": "events.OrderPlaced"}
	for name, want := range map[string]map[string]string{
		"send events.OrderPlaced":    {"messaging.operation.type": "send", "messaging.operation.name": "send"},
		"process events.OrderPlaced": {"messaging.operation.type": "process", "messaging.operation.name": "process", "messaging.consumer.group.name": "invoices.Issue"},
	} {
		for k, v := range common {
			want[k] = v
		}
		assert.Equal(t, want, sampler.attrs(name), name)
	}
}
