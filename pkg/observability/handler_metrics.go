package observability

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/trace"
)

// OutcomeKey is the metric attribute that says how the handling of a message
// ended: OutcomeSuccess, or OutcomeFailure when the retries are spent (or the
// error was permanent) and the message goes to the poison queue.
const OutcomeKey = attribute.Key("outcome")

// Values of OutcomeKey.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// HandlerMetrics measures the router's handlers through two middlewares,
// placed around the retry middleware:
//
//	m := observability.NewHandlerMetrics()
//	router.AddMiddleware(
//		observability.ConsumeSpan(),
//		middleware.CorrelationID,
//		poisonQueue,
//		m.Message, // once per delivered message
//		recordFailure,
//		retry.Middleware,
//		m.Attempt, // once per attempt
//		middleware.Recoverer,
//		middleware.Timeout(d),
//	)
//
// Message records messaging.process.duration (the whole handling, retries
// and backoff included) and orderflow.messages.processed, both by handler,
// topic and outcome (error.type too, on failure). Attempt counts
// orderflow.messages.retried and adds each failed attempt's error to the
// message's span. Attempt tells a retry from a first attempt by a counter
// Message puts into the context, so it needs Message outside the retries.
type HandlerMetrics struct {
	duration  messagingconv.ProcessDuration
	processed metric.Int64Counter
	retried   metric.Int64Counter
	// succeeded is the attribute set of each handler and topic's
	// successful handlings, built once (see perKey).
	succeeded perKey[handlerKey, metric.MeasurementOption]
}

// handlerKey is a handler and the topic it consumes.
type handlerKey struct{ handler, topic string }

// NewHandlerMetrics creates the handler instruments. Instrument errors go to
// OpenTelemetry's error handler, leaving no-op instruments.
func NewHandlerMetrics(opts ...Option) *HandlerMetrics {
	meter := newConfig(opts).meter()
	var m HandlerMetrics
	var err error
	if m.duration, err = messagingconv.NewProcessDuration(meter, metric.WithExplicitBucketBoundaries(handlingBuckets...)); err != nil {
		otel.Handle(err)
	}
	if m.processed, err = meter.Int64Counter(metricMessagesProcessed, metric.WithUnit("{message}"),
		metric.WithDescription("Messages whose handling ended, by outcome: success, or failure (on to the poison queue).")); err != nil {
		otel.Handle(err)
	}
	if m.retried, err = meter.Int64Counter(metricMessagesRetried, metric.WithUnit("{message}"),
		metric.WithDescription("Handler attempts repeated after a failure.")); err != nil {
		otel.Handle(err)
	}
	m.succeeded.build = func(k handlerKey) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(handlerAttrs(k), OutcomeKey.String(OutcomeSuccess))...))
	}
	return &m
}

type attemptsKey struct{}

// Message measures the handling of one delivered message, all its attempts
// included. Place it inside the poison queue middleware, outside the retries.
// When handling finally fails it also marks the message's span failed:
// ConsumeSpan, outside the poison queue, sees a poisoned message as handled.
func (m *HandlerMetrics) Message(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		ctx := context.WithValue(msg.Context(), attemptsKey{}, new(atomic.Int64))
		msg.SetContext(ctx)
		out, err := h(msg)
		// Inner middlewares (the timeout) leave their own, possibly
		// cancelled, context on the message; the poison queue publishes
		// with the message's context.
		msg.SetContext(ctx)

		k := handlerKeyOf(ctx)
		set := m.succeeded.get(k)
		if err != nil {
			set = metric.WithAttributeSet(attribute.NewSet(append(handlerAttrs(k), OutcomeKey.String(OutcomeFailure), semconv.ErrorType(err))...))
			trace.SpanFromContext(ctx).SetStatus(codes.Error, "handling failed: "+err.Error())
		}
		m.duration.Inst().Record(ctx, time.Since(start).Seconds(), set)
		m.processed.Add(ctx, 1, set)
		return out, err
	}
}

// Attempt counts the attempts after the first as retries and records each
// failed attempt's error on the message's span. Place it inside the retry
// middleware.
func (m *HandlerMetrics) Attempt(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		attempt := int64(1)
		if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int64); ok {
			attempt = n.Add(1)
		}
		if attempt > 1 {
			m.retried.Add(ctx, 1, metric.WithAttributes(handlerAttrs(handlerKeyOf(ctx))...))
		}
		out, err := h(msg)
		if err != nil {
			trace.SpanFromContext(ctx).RecordError(err, trace.WithAttributes(attribute.Int64("orderflow.attempt", attempt)))
		}
		return out, err
	}
}

// handlerAttrs identify a handler in the metrics: the semantic conventions'
// messaging.process.duration attributes.
func handlerAttrs(k handlerKey) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingOperationName(opProcess),
		semconv.MessagingDestinationName(k.topic),
		semconv.MessagingConsumerGroupName(k.handler),
	}
}

// handlerKeyOf is the handler and topic the router put into ctx.
func handlerKeyOf(ctx context.Context) handlerKey {
	return handlerKey{handler: message.HandlerNameFromCtx(ctx), topic: message.SubscribeTopicFromCtx(ctx)}
}
