package messaging

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// BrokerConfig configures the connection to RabbitMQ.
type BrokerConfig struct {
	URL string
	// Prefetch is how many unacknowledged deliveries RabbitMQ keeps in flight
	// per consumer. watermill-amqp's default of 1 leaves the consumer idle for
	// a network round trip after every ack.
	Prefetch int
	// PublisherChannels is the size of the publisher's channel pool. Without a
	// pool watermill-amqp opens and closes a channel for every publish. A
	// publish holds its channel until its confirm arrives, so the pool should
	// be about as large as the number of publishes in flight: one per
	// forwarder worker, and the poison queue's (default 8).
	PublisherChannels int
	// ReconnectMaxInterval caps the backoff between reconnection attempts
	// (watermill-amqp's default cap is a minute).
	ReconnectMaxInterval time.Duration
	// Consumers is how many messages of one handler's queue a process
	// handles at once.
	Consumers int
	// AckBatching consumes each queue on one channel and acknowledges its
	// deliveries in batches (see batchingSubscriber); off, each queue has
	// Consumers watermill-amqp subscribers, each acking alone (Concurrent).
	// Prefetch should then exceed Consumers: acks waiting for their batch
	// hold prefetch slots too.
	AckBatching bool
	// DrainTimeout bounds how long closing a subscriber waits for the
	// messages it handed out to be settled (default 10 s).
	DrainTimeout time.Duration
	// Topology is what the service declares (see Topology).
	Topology Topology
	// OnDial, when set, is called after each attempt of ConnectBroker to
	// connect, with its error (nil: connected).
	OnDial func(err error)
}

func (c BrokerConfig) withDefaults() BrokerConfig {
	if c.Prefetch <= 0 {
		c.Prefetch = 64
	}
	if c.PublisherChannels <= 0 {
		c.PublisherChannels = 8
	}
	if c.ReconnectMaxInterval <= 0 {
		c.ReconnectMaxInterval = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return c
}

// amqpConfig is the watermill-amqp configuration every connection, publisher
// and subscriber uses: durable fanout exchanges per topic, durable queues per
// handler (declared by the topology, quorum by default), persistent messages,
// publisher confirms and manual acks.
func (c BrokerConfig) amqpConfig(queueName amqp.QueueNameGenerator) amqp.Config {
	cfg := amqp.NewDurablePubSubConfig(c.URL, queueName)
	cfg.Connection.Reconnect = &amqp.ReconnectConfig{
		BackoffInitialInterval:     100 * time.Millisecond,
		BackoffRandomizationFactor: 0.5,
		BackoffMultiplier:          1.5,
		BackoffMaxInterval:         c.ReconnectMaxInterval,
	}
	cfg.Marshaler = amqpMarshaler{}
	cfg.Queue.Arguments = c.Topology.queueArgs()
	cfg.Publish.ConfirmDelivery = true
	cfg.Publish.ChannelPoolSize = c.PublisherChannels
	cfg.Consume.Qos.PrefetchCount = c.Prefetch
	cfg.TopologyBuilder = topologyBuilder{topology: c.Topology}
	return cfg
}

// Broker holds a process's two RabbitMQ connections (RabbitMQ throttles a
// publishing connection under flow control, so consumers get their own) and
// the confirming publisher. Both connections reconnect by themselves after
// the first one succeeded.
type Broker struct {
	cfg       BrokerConfig
	log       watermill.LoggerAdapter
	pubConn   *amqp.ConnectionWrapper
	subConn   *amqp.ConnectionWrapper
	publisher *renewingPublisher

	// up is what Connected reports. It is kept by a monitor connection of
	// our own rather than read from watermill-amqp's ConnectionWrapper,
	// whose IsConnected races with its reconnect loop (watermill #693).
	up      atomic.Bool
	monConn atomic.Pointer[amqp091.Connection]
	closing chan struct{}
	stopped chan struct{}
}

// ConnectBroker dials RabbitMQ, retrying with backoff until it answers or ctx
// ends, so a service can start (and accept orders into its outbox) while the
// broker is down.
func ConnectBroker(ctx context.Context, cfg BrokerConfig, log watermill.LoggerAdapter) (*Broker, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = watermill.NopLogger{}
	}
	b := &Broker{cfg: cfg, log: log, closing: make(chan struct{}), stopped: make(chan struct{})}
	connCfg := cfg.amqpConfig(nil).Connection
	delay := 100 * time.Millisecond
	for {
		err := b.dial(connCfg)
		if cfg.OnDial != nil {
			cfg.OnDial(err)
		}
		if err == nil {
			b.up.Store(true)
			go b.monitor()
			return b, nil
		}
		if IsAccessRefused(err) {
			fields := brokerUser(cfg.URL)
			fields["retry_in"] = delay.String()
			log.Error("rabbitmq refused the credentials: check the user, password and vhost in BROKER_URL", err, fields)
		} else {
			log.Error("cannot connect to rabbitmq, retrying", err, watermill.LogFields{"retry_in": delay.String()})
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to rabbitmq: %w", errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
		delay = min(delay*2, cfg.ReconnectMaxInterval)
	}
}

// IsAccessRefused reports whether err is RabbitMQ refusing a connection's
// credentials, or the user's access to the vhost (AMQP 403 ACCESS_REFUSED).
func IsAccessRefused(err error) bool {
	var amqpErr *amqp091.Error
	return errors.As(err, &amqpErr) && amqpErr.Code == amqp091.AccessRefused
}

// brokerUser is the user and vhost of a broker URL, for log lines (never
// the password).
func brokerUser(rawURL string) watermill.LogFields {
	u, err := amqp091.ParseURI(rawURL)
	if err != nil {
		return watermill.LogFields{}
	}
	return watermill.LogFields{"user": u.Username, "vhost": u.Vhost, "host": net.JoinHostPort(u.Host, strconv.Itoa(u.Port))}
}

func (b *Broker) dial(connCfg amqp.ConnectionConfig) error {
	pubConn, err := amqp.NewConnection(connCfg, b.log)
	if err != nil {
		return fmt.Errorf("dial publisher connection: %w", err)
	}
	subConn, err := amqp.NewConnection(connCfg, b.log)
	if err != nil {
		return errors.Join(fmt.Errorf("dial subscriber connection: %w", err), pubConn.Close())
	}
	pub, err := newRenewingPublisher(b.cfg.amqpConfig(nil), b.log, pubConn)
	if err != nil {
		return errors.Join(fmt.Errorf("create publisher: %w", err), pubConn.Close(), subConn.Close())
	}
	b.pubConn, b.subConn, b.publisher = pubConn, subConn, pub
	return nil
}

// Publisher returns the confirming publisher. Publish fails while the
// connection is down; callers (the forwarder, the poison middleware) then
// leave the message where it was.
func (b *Broker) Publisher() message.Publisher { return b.publisher }

// Subscriber returns a subscriber for one handler's queue. The subscription
// joins the topology, so its queue is declared with the same arguments
// everywhere.
func (b *Broker) Subscriber(sub Subscription) (*amqp.Subscriber, error) {
	s, err := amqp.NewSubscriberWithConnection(b.subscriberConfig(sub), b.log, b.subConn)
	if err != nil {
		return nil, fmt.Errorf("create subscriber for %s: %w", sub.Queue(), err)
	}
	return s, nil
}

// batchingSubscriber returns a subscriber for one handler's queue that acks
// in batches; like Subscriber, its subscription joins the topology.
func (b *Broker) batchingSubscriber(sub Subscription) *batchingSubscriber {
	return newBatchingSubscriber(b.subConn, b.subscriberConfig(sub), b.cfg.Consumers, b.cfg.DrainTimeout, b.cfg.ReconnectMaxInterval, b.log)
}

// subscriberConfig is the watermill-amqp configuration of sub's queue, with
// sub added to the topology it declares.
func (b *Broker) subscriberConfig(sub Subscription) amqp.Config {
	cfg := b.cfg
	cfg.Topology = cfg.Topology.With(sub)
	return cfg.amqpConfig(amqp.GenerateQueueNameTopicNameWithSuffix(sub.Handler))
}

// Connected reports whether RabbitMQ is reachable.
func (b *Broker) Connected() bool { return b.up.Load() }

// QueueDepth returns how many messages are ready in queue, asked over the
// monitor connection; 0 for a queue that does not exist yet.
func (b *Broker) QueueDepth(queue string) (int, error) {
	conn := b.monConn.Load()
	if conn == nil {
		return 0, errors.New("not connected to rabbitmq")
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp091.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", queue, err)
	}
	return q.Messages, nil
}

// monitor holds a connection of its own to RabbitMQ and reports its state
// in b.up, redialling with backoff after it drops, until Close.
func (b *Broker) monitor() {
	defer close(b.stopped)
	delay := 100 * time.Millisecond
	for {
		conn, err := amqp091.DialConfig(b.cfg.URL, amqp091.Config{Heartbeat: 5 * time.Second, Properties: amqp091.Table{"connection_name": "orderflow-monitor"}})
		if err == nil {
			b.monConn.Store(conn)
			b.up.Store(true)
			delay = 100 * time.Millisecond
			select {
			case cerr := <-conn.NotifyClose(make(chan *amqp091.Error, 1)):
				err := errors.New("connection closed")
				if cerr != nil {
					err = cerr
				}
				b.log.Error("rabbitmq connection lost", err, nil)
			case <-b.closing:
				_ = conn.Close()
				return
			}
		}
		b.up.Store(false)
		b.monConn.Store(nil)
		select {
		case <-b.closing:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, b.cfg.ReconnectMaxInterval)
	}
}

// Close closes the publisher and both connections.
func (b *Broker) Close() error {
	close(b.closing)
	<-b.stopped
	return errors.Join(b.publisher.Close(), b.pubConn.Close(), b.subConn.Close())
}
