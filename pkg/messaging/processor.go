package messaging

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
)

// SubscriberFactory gives each handler its own durable queue; *Broker is one.
type SubscriberFactory interface {
	Subscriber(sub Subscription) (message.Subscriber, error)
}

// brokerSubscribers adapts *Broker to SubscriberFactory.
type brokerSubscribers struct{ b *Broker }

func (f brokerSubscribers) Subscriber(sub Subscription) (message.Subscriber, error) {
	if f.b.cfg.AckBatching {
		return f.b.batchingSubscriber(sub), nil
	}
	s, err := f.b.Subscriber(sub)
	if err != nil {
		return nil, err
	}
	return Concurrent(s, f.b.cfg.Consumers), nil
}

// Subscribers returns the broker as a SubscriberFactory.
func (b *Broker) Subscribers() SubscriberFactory { return brokerSubscribers{b} }

// EventProcessor registers typed CQRS event handlers on a router, each on its
// own durable queue "events.<Event>_<handler name>", so every service gets
// every event once however many replicas it runs (they share the queue).
type EventProcessor struct {
	processor *cqrs.EventProcessor
	marshaler Marshaler
}

// NewEventProcessor returns an event processor for service's handlers.
func NewEventProcessor(router *message.Router, service string, subs SubscriberFactory, log watermill.LoggerAdapter) (*EventProcessor, error) {
	m := NewMarshaler()
	p, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return EventTopic(p.EventName), nil
		},
		SubscriberConstructor: func(p cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subs.Subscriber(Subscription{Service: service, Handler: p.HandlerName, Topic: EventTopic(p.EventName)})
		},
		Marshaler: m,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("create event processor: %w", err)
	}
	return &EventProcessor{processor: p, marshaler: m}, nil
}

// AddHandlers registers handlers. A message on a handler's queue that does not
// name the handler's event is permanent garbage: it goes to the poison queue
// without retries (Watermill would retry it as an ordinary error).
func (p *EventProcessor) AddHandlers(handlers ...cqrs.EventHandler) error {
	for _, h := range handlers {
		rh, err := p.processor.AddHandler(h)
		if err != nil {
			return fmt.Errorf("add handler %s: %w", h.HandlerName(), err)
		}
		rh.AddMiddleware(requireEventName(p.marshaler.Name(h.NewEvent())))
	}
	return nil
}

func requireEventName(want string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if got := msg.Metadata.Get(MetadataEventName); got != want {
				return nil, Permanent(fmt.Errorf("message %s names event %q, the handler takes %q", msg.UUID, got, want))
			}
			return h(msg)
		}
	}
}
