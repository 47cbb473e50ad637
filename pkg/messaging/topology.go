package messaging

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// PoisonPrefix prefixes each service's poison queue (and its exchange).
const PoisonPrefix = "poison."

// PoisonQueue returns the name of a service's poison queue: poison.invoices.
func PoisonQueue(service string) string { return PoisonPrefix + service }

// Subscription is one handler's durable queue on one topic.
type Subscription struct {
	Service string // the consuming service; its poison queue is the dead-letter target
	Handler string // the handler name, unique in the system
	Topic   string // the event topic, e.g. events.OrderPlaced
}

// Queue is the subscription's queue name, "<topic>_<handler>", the name
// watermill-amqp's GenerateQueueNameTopicNameWithSuffix gives it.
func (s Subscription) Queue() string { return s.Topic + "_" + s.Handler }

// Topology is the set of durable subscriptions a service declares: its own
// handlers' queues, and those of the subscribers of the events it publishes.
//
// Events go to fanout exchanges, and RabbitMQ drops a message published to an
// exchange that has no queue bound yet, with a positive publisher confirm. If
// orders forwarded OrderPlaced before invoices had ever started, the event
// would be lost although the outbox row was deleted. So every publisher
// declares the subscriptions of a topic it is given (idempotently) before its
// first publish to it, and a queue exists from the first event on. The apps
// list them: a subscriber's queue name is part of the contract between them.
type Topology struct {
	Subscriptions []Subscription
	// DeliveryLimit bounds how often RabbitMQ redelivers one message (a
	// consumer that crashes on it every time); past it the message is
	// dead-lettered to the service's poison queue instead of dropped.
	// Quorum queues only: classic ones do not count redeliveries.
	DeliveryLimit int
	// QueueType is the type of every queue: QueueQuorum (the default) or
	// QueueClassic. All services on one broker must use the same.
	QueueType QueueType
}

// QueueType is the RabbitMQ queue type the topology declares.
type QueueType string

const (
	// QueueQuorum queues replicate on a cluster (Amazon MQ's cluster
	// deployment), bound redeliveries (DeliveryLimit), and work on a single
	// node too. The default.
	QueueQuorum QueueType = "quorum"
	// QueueClassic queues (version 2, RabbitMQ 3.10 and later) keep their
	// messages on one node's disk: durable and confirmed like quorum ones,
	// but not replicated, and a message that crashes its consumer every time
	// is redelivered without bound. For single-node brokers only; not a
	// speed-up (docs/performance.md, the ablation: the flow was no faster on
	// them, and RabbitMQ spent more CPU per order).
	QueueClassic QueueType = "classic"
)

// ParseQueueType reads a queue type; "" is QueueQuorum.
func ParseQueueType(s string) (QueueType, error) {
	switch QueueType(s) {
	case "", QueueQuorum:
		return QueueQuorum, nil
	case QueueClassic:
		return QueueClassic, nil
	}
	return "", fmt.Errorf("queue type must be %s or %s, got %q", QueueQuorum, QueueClassic, s)
}

// With returns a copy of t that also holds sub (when it is not there yet).
func (t Topology) With(sub Subscription) Topology {
	for _, s := range t.Subscriptions {
		if s == sub {
			return t
		}
	}
	t.Subscriptions = append(append([]Subscription(nil), t.Subscriptions...), sub)
	return t
}

// queueArgs are the arguments every queue of the topology has.
func (t Topology) queueArgs() amqp091.Table {
	if t.QueueType == QueueClassic {
		return amqp091.Table{"x-queue-type": string(QueueClassic), "x-queue-version": int32(2)}
	}
	return amqp091.Table{"x-queue-type": string(QueueQuorum)}
}

func (t Topology) subscriptionArgs(s Subscription) amqp091.Table {
	args := t.queueArgs()
	args["x-dead-letter-exchange"] = PoisonQueue(s.Service)
	if t.QueueType == QueueClassic {
		return args
	}
	limit := t.DeliveryLimit
	if limit <= 0 {
		limit = 20
	}
	args["x-delivery-limit"] = int64(limit)
	return args
}

// declareExchange declares a durable fanout exchange.
func declareExchange(ch *amqp091.Channel, name string) error {
	if err := ch.ExchangeDeclare(name, "fanout", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return nil
}

// declareQueue declares a durable queue and binds it to a fanout exchange.
func declareQueue(ch *amqp091.Channel, queue, exchange string, args amqp091.Table) error {
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		var amqpErr *amqp091.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp091.PreconditionFailed {
			return fmt.Errorf("declare queue %s as %s: it exists with other arguments "+
				"(BROKER_QUEUE_TYPE must be the same in every service and match the queues on the broker; "+
				"docs/operations.md says how to change it): %w", queue, args["x-queue-type"], err)
		}
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "", exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", queue, exchange, err)
	}
	return nil
}

func (t Topology) declarePoison(ch *amqp091.Channel, service string) error {
	name := PoisonQueue(service)
	if err := declareExchange(ch, name); err != nil {
		return err
	}
	return declareQueue(ch, name, name, t.queueArgs())
}

func (t Topology) declareSubscription(ch *amqp091.Channel, s Subscription) error {
	if err := t.declarePoison(ch, s.Service); err != nil {
		return err
	}
	if err := declareExchange(ch, s.Topic); err != nil {
		return err
	}
	return declareQueue(ch, s.Queue(), s.Topic, t.subscriptionArgs(s))
}

// Declare declares the exchange of topic and every queue subscribed to it.
// A poison topic gets its poison queue.
func (t Topology) Declare(ch *amqp091.Channel, topic string) error {
	if service, ok := strings.CutPrefix(topic, PoisonPrefix); ok {
		return t.declarePoison(ch, service)
	}
	if err := declareExchange(ch, topic); err != nil {
		return err
	}
	for _, s := range t.Subscriptions {
		if s.Topic != topic {
			continue
		}
		if err := t.declareSubscription(ch, s); err != nil {
			return err
		}
	}
	return nil
}

// topologyBuilder plugs Topology into watermill-amqp, whose default builder
// declares only the one exchange (publisher) or queue (subscriber) at hand.
type topologyBuilder struct{ topology Topology }

func (b topologyBuilder) ExchangeDeclare(ch *amqp091.Channel, exchange string, _ amqp.Config) error {
	return b.topology.Declare(ch, exchange)
}

func (b topologyBuilder) BuildTopology(ch *amqp091.Channel, p amqp.BuildTopologyParams, _ amqp.Config, _ watermill.LoggerAdapter) error {
	for _, s := range b.topology.Subscriptions {
		if s.Topic == p.Topic && s.Queue() == p.QueueName {
			return b.topology.Declare(ch, p.Topic)
		}
	}
	return fmt.Errorf("queue %s on %s is not in the topology", p.QueueName, p.Topic)
}
