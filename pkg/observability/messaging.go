package observability

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/trace"
)

// occurredAtKey is the metadata key of an event's time, RFC 3339 with
// nanoseconds: pkg/messaging's MetadataOccurredAt, which its marshaler sets
// on every event.
const occurredAtKey = "occurred_at"

// Messaging operation names (messaging.operation.name and the first word of
// span names), after the semantic conventions' operation types.
const (
	opCreate  = "create"
	opSend    = "send"
	opProcess = "process"
)

// InjectMessage writes the W3C trace context (traceparent, tracestate) and
// baggage of ctx into msg's metadata, so that the message's consumer joins
// the trace.
func InjectMessage(ctx context.Context, msg *message.Message, opts ...Option) {
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	newConfig(opts).propagator.Inject(ctx, propagation.MapCarrier(msg.Metadata))
}

// ExtractMessage returns ctx with the trace context and baggage found in
// msg's metadata: a span started from it is a child of the span that
// published the message.
func ExtractMessage(ctx context.Context, msg *message.Message, opts ...Option) context.Context {
	return newConfig(opts).propagator.Extract(ctx, propagation.MapCarrier(msg.Metadata))
}

// ConsumeSpan is the outermost router middleware. It continues the trace
// found in the message's metadata with a CONSUMER span "process <topic>"
// (messaging.system rabbitmq, messaging.operation.type process,
// messaging.destination.name the topic, messaging.consumer.group.name the
// handler, messaging.message.id the event id, orderflow.correlation_id the
// correlation_id metadata), puts
// the span and the message's correlation id into the message's context for
// the handler, and records the error the handler finally returns.
//
// It replaces the trace extraction of pkg/messaging's ExtractContext, which
// must not run after it: extracting again would make the remote producer,
// not this span, the parent of the handler's spans.
//
// A message the poison queue took is handled, as far as this middleware can
// see: NewHandlerMetrics' Message middleware, inside the poison queue, marks
// the span failed.
func ConsumeSpan(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	tracer := c.tracer()
	starts := perKey[handlerKey, spanStart]{build: func(k handlerKey) spanStart {
		return newSpanStart(opProcess, k.topic, semconv.MessagingConsumerGroupName(k.handler))
	}}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			start := starts.get(handlerKeyOf(ctx))
			parent := c.propagator.Extract(ctx, propagation.MapCarrier(msg.Metadata))
			if id := msg.Metadata.Get(middleware.CorrelationIDMetadataKey); id != "" {
				parent = WithCorrelationID(parent, id)
			}
			ctx, span := tracer.Start(parent, start.name, trace.WithSpanKind(trace.SpanKindConsumer), start.attrs)
			if span.IsRecording() {
				span.SetAttributes(messageDetails(msg)...)
			}
			defer span.End()
			msg.SetContext(ctx)
			out, err := h(msg)
			if err != nil {
				recordError(span, err)
			}
			return out, err
		}
	}
}

// OutboxPublisher wraps the publisher the outbox event bus appends with:
// every message gets a PRODUCER span "create <topic>"
// (messaging.operation.type create), a child of the span in the message's
// context (the HTTP request or the handler that published), and the span's
// trace context is written into the message's metadata, which the outbox
// keeps. Wrap the forwarder's enveloping publisher, so that the span sees the
// event's topic rather than the outbox's:
//
//	cqrs.NewEventBusWithConfig(observability.OutboxPublisher(forwarder.NewPublisher(sqlPub, …)), …)
func OutboxPublisher(pub message.Publisher, opts ...Option) message.Publisher {
	c := newConfig(opts)
	return &tracingPublisher{pub: pub, op: opCreate, tracer: c.tracer(), propagator: c.propagator, starts: spanStarts(opCreate)}
}

// TracingPublisher wraps a publisher to RabbitMQ: every message gets a
// PRODUCER span "send <topic>" (messaging.operation.type send) and counts in
// messaging.client.sent.messages. The span's parent is the span in the
// message's context, or else the trace context in its metadata, which is how
// the forwarder, whose context knows nothing of the event, continues the
// trace that OutboxPublisher wrote into the outbox. The span's own context
// then replaces the metadata's, so the consumer's span is its child:
// HTTP request → create → send → process make one trace.
func TracingPublisher(pub message.Publisher, opts ...Option) message.Publisher {
	return newSendPublisher(pub, opts, nil)
}

// ForwarderPublisher is TracingPublisher for the outbox forwarder's
// publisher. It also records orderflow.outbox.forward_lag: the time from the
// event's occurred_at metadata to RabbitMQ's confirm of the publish.
//
//	outbox.NewForwarder(db, observability.ForwarderPublisher(broker.Publisher()), …)
func ForwarderPublisher(pub message.Publisher, opts ...Option) message.Publisher {
	c := newConfig(opts)
	lag, err := c.meter().Float64Histogram(metricOutboxForwardLag,
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(LagBuckets...),
		metric.WithDescription("Time from an event's occurrence to RabbitMQ confirming its publish by the outbox forwarder."))
	if err != nil {
		otel.Handle(err)
	}
	attrs := perKey[string, metric.MeasurementOption]{build: func(topic string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemRabbitMQ, semconv.MessagingDestinationName(topic)))
	}}
	return newSendPublisher(pub, opts, func(ctx context.Context, topic string, msg *message.Message) {
		at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(occurredAtKey))
		if err != nil {
			return // not an event of ours: nothing to measure from
		}
		lag.Record(ctx, max(time.Since(at), 0).Seconds(), attrs.get(topic))
	})
}

// PoisonPublisher is TracingPublisher for the router's poison queue
// publisher. It also counts orderflow.messages.poisoned by handler and
// original topic, which Watermill's poison middleware writes into the
// metadata, once RabbitMQ confirmed the poisoned message.
//
//	RouterConfig{PoisonPublisher: observability.PoisonPublisher(broker.Publisher())}
func PoisonPublisher(pub message.Publisher, opts ...Option) message.Publisher {
	c := newConfig(opts)
	poisoned, err := c.meter().Int64Counter(metricMessagesPoisoned,
		metric.WithUnit("{message}"), metric.WithDescription("Messages published to the poison queue."))
	if err != nil {
		otel.Handle(err)
	}
	return newSendPublisher(pub, opts, func(ctx context.Context, _ string, msg *message.Message) {
		poisoned.Add(ctx, 1, metric.WithAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingConsumerGroupName(msg.Metadata.Get(middleware.PoisonedHandlerKey)),
			semconv.MessagingDestinationName(msg.Metadata.Get(middleware.PoisonedTopicKey)),
		))
	})
}

func newSendPublisher(pub message.Publisher, opts []Option, published func(context.Context, string, *message.Message)) *tracingPublisher {
	c := newConfig(opts)
	sent, err := messagingconv.NewClientSentMessages(c.meter())
	if err != nil {
		otel.Handle(err)
	}
	return &tracingPublisher{
		pub: pub, op: opSend, tracer: c.tracer(), propagator: c.propagator, starts: spanStarts(opSend),
		sent: &sent, published: published,
		sentOK: perKey[string, attribute.Set]{build: func(topic string) attribute.Set {
			// The attributes ClientSentMessages.Add would give a send.
			return attribute.NewSet(semconv.MessagingDestinationName(topic),
				semconv.MessagingOperationName(opSend), semconv.MessagingSystemRabbitMQ)
		}},
	}
}

// perKey holds what a message's telemetry needs once per topic (and
// handler): its metrics' attribute sets, its span's name and start
// attributes. A process sees a handful of topics and handlers, and
// building these for every message (sorting and hashing a set, allocating
// slices and strings) was a third of the forwarder's instrumentation cost
// per event (BenchmarkForwarderPublisher).
type perKey[K comparable, T any] struct {
	m     sync.Map // K → T
	build func(K) T
}

func (c *perKey[K, T]) get(k K) T {
	if v, ok := c.m.Load(k); ok {
		return v.(T) //nolint:forcetypeassert // only get stores, and only Ts
	}
	v, _ := c.m.LoadOrStore(k, c.build(k))
	return v.(T) //nolint:forcetypeassert // as above
}

// tracingPublisher starts a PRODUCER span per message around the wrapped
// publisher's Publish.
type tracingPublisher struct {
	pub        message.Publisher
	op         string
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// starts holds each topic's span name and start attributes.
	starts *perKey[string, spanStart]
	// sent counts messaging.client.sent.messages (send publishers only);
	// sentOK holds the attribute set of each topic's successful sends.
	sent   *messagingconv.ClientSentMessages
	sentOK perKey[string, attribute.Set]
	// published runs for each message RabbitMQ accepted.
	published func(ctx context.Context, topic string, msg *message.Message)
}

// Publish publishes msgs through the wrapped publisher, each inside its own
// span, and returns the wrapped publisher's error.
func (p *tracingPublisher) Publish(topic string, msgs ...*message.Message) error {
	type started struct {
		span trace.Span
		ctx  context.Context
		prev context.Context
	}
	spans := make([]started, len(msgs))
	for i, msg := range msgs {
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		prev := msg.Context()
		parent := prev
		if !trace.SpanContextFromContext(parent).IsValid() {
			parent = p.propagator.Extract(parent, propagation.MapCarrier(msg.Metadata))
		}
		start := p.starts.get(topic)
		ctx, span := p.tracer.Start(parent, start.name, trace.WithSpanKind(trace.SpanKindProducer), start.attrs)
		if span.IsRecording() {
			span.SetAttributes(messageDetails(msg)...)
		}
		p.propagator.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		msg.SetContext(ctx)
		spans[i] = started{span: span, ctx: ctx, prev: prev}
	}

	err := p.pub.Publish(topic, msgs...)

	for i, msg := range msgs {
		s := spans[i]
		msg.SetContext(s.prev)
		switch {
		case p.sent == nil:
		case err != nil:
			p.sent.Add(s.ctx, 1, p.op, messagingconv.SystemRabbitMQ, semconv.MessagingDestinationName(topic), semconv.ErrorType(err))
		default:
			p.sent.AddSet(s.ctx, 1, p.sentOK.get(topic))
		}
		if err != nil {
			recordError(s.span, err)
		} else if p.published != nil {
			p.published(s.ctx, topic, msg)
		}
		s.span.End()
	}
	return err
}

// Close closes the wrapped publisher.
func (p *tracingPublisher) Close() error { return p.pub.Close() }

// spanStart is how a message span of one operation, topic and handler
// starts: its name, and the attributes the semantic conventions ask for at
// creation because a sampler may decide on them (the system, the
// operation, the destination, the consumer group). The message's own
// attributes (messageDetails) go only to spans that are recorded: with 10 %
// sampled, building them for every span was the largest of the orders
// service's own allocations (8 %).
type spanStart struct {
	name  string
	attrs trace.SpanStartEventOption
}

func newSpanStart(op, topic string, extra ...attribute.KeyValue) spanStart {
	opType := semconv.MessagingOperationTypeSend
	switch op {
	case opCreate:
		opType = semconv.MessagingOperationTypeCreate
	case opProcess:
		opType = semconv.MessagingOperationTypeProcess
	}
	attrs := append([]attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		opType,
		semconv.MessagingOperationName(op),
		semconv.MessagingDestinationName(topic),
	}, extra...)
	return spanStart{name: spanName(op, topic), attrs: trace.WithAttributes(attrs...)}
}

// spanStarts is a publisher's spanStart per topic.
func spanStarts(op string) *perKey[string, spanStart] {
	return &perKey[string, spanStart]{build: func(topic string) spanStart { return newSpanStart(op, topic) }}
}

// messageDetails are a recorded message span's attributes of the message
// itself.
func messageDetails(msg *message.Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingMessageID(msg.UUID),
		semconv.MessagingMessageBodySize(len(msg.Payload)),
	}
	if id := msg.Metadata.Get(middleware.CorrelationIDMetadataKey); id != "" {
		attrs = append(attrs, CorrelationIDKey.String(id))
	}
	return attrs
}

// spanName is the semantic conventions' "{operation} {destination}".
func spanName(op, topic string) string {
	if topic == "" {
		return op
	}
	return op + " " + topic
}

// recordError marks span failed with err.
func recordError(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorType(err))
}
