package messaging

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// batchingSubscriber consumes one handler's queue on one AMQP channel,
// hands up to concurrency messages to the router at once and acknowledges
// them in batches (ackWindow).
//
// It exists because watermill-amqp's subscriber acks each delivery alone and
// hands out the next only after that ack, so a queue handled n at a time
// needs n consumers, each with its own channel, and costs RabbitMQ one ack
// frame per message. Here one consumer keeps many messages in flight and an
// ack covers every message settled since the last one. Everything else is
// watermill-amqp's: its connection (and reconnection), its marshaler and the
// topology builder.
type batchingSubscriber struct {
	conn        *amqp.ConnectionWrapper
	cfg         amqp.Config
	concurrency int
	// drain bounds how long Close waits for the messages handed out to
	// be settled before it closes the channel (the rest are redelivered).
	drain      time.Duration
	retryMax   time.Duration
	log        watermill.LoggerAdapter
	closing    chan struct{}
	closeOnce  sync.Once
	subscribed sync.WaitGroup
}

func newBatchingSubscriber(conn *amqp.ConnectionWrapper, cfg amqp.Config, concurrency int, drain, retryMax time.Duration, log watermill.LoggerAdapter) *batchingSubscriber {
	return &batchingSubscriber{
		conn: conn, cfg: cfg, concurrency: max(concurrency, 1), drain: drain, retryMax: retryMax,
		log: log, closing: make(chan struct{}),
	}
}

// Subscribe declares topic's queue and consumes it until ctx ends or Close
// is called, reconnecting when the channel or the connection fails. It fails
// only if the first declaration or consume does.
func (s *batchingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	select {
	case <-s.closing:
		return nil, errors.New("subscriber is closed")
	default:
	}
	params := amqp.BuildTopologyParams{
		Topic:        topic,
		QueueName:    s.cfg.Queue.GenerateName(topic),
		ExchangeName: s.cfg.Exchange.GenerateName(topic),
		RoutingKey:   s.cfg.QueueBind.GenerateRoutingKey(topic),
	}
	c, err := s.consume(params)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	fields := watermill.LogFields{"topic": topic, "amqp_queue_name": params.QueueName}
	s.subscribed.Go(func() {
		defer close(out)
		for {
			c.run(ctx, out)
			if c, err = s.reconsume(ctx, params, fields); err != nil {
				return // closing
			}
		}
	})
	return out, nil
}

// reconsume waits for the connection and consumes again, with backoff; it
// fails only when the subscriber is closing.
func (s *batchingSubscriber) reconsume(ctx context.Context, params amqp.BuildTopologyParams, fields watermill.LogFields) (*consumption, error) {
	delay := 100 * time.Millisecond
	for {
		t := time.NewTimer(delay)
		select {
		case <-s.closing:
			t.Stop()
			return nil, errors.New("closing")
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		c, err := s.consume(params)
		if err == nil {
			s.log.Info("Consuming again", fields)
			return c, nil
		}
		s.log.Debug("Cannot consume yet, retrying", fields.Add(watermill.LogFields{"err": err.Error(), "retry_in": delay.String()}))
		delay = min(delay*2, s.retryMax)
	}
}

// consume opens a channel, declares the topology, sets the prefetch and
// starts the consumer.
func (s *batchingSubscriber) consume(p amqp.BuildTopologyParams) (*consumption, error) {
	if !s.conn.IsConnected() {
		return nil, errors.New("not connected to rabbitmq")
	}
	ch, err := s.conn.Connection().Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	c := &consumption{s: s, ch: ch, tag: "orderflow-" + watermill.NewShortUUID()}
	c.closed = make(chan struct{})
	go func(notify <-chan *amqp091.Error) {
		if err, ok := <-notify; ok && err != nil {
			s.log.Error("Channel closed, consuming again when the connection is back", err, watermill.LogFields{"amqp_queue_name": p.QueueName})
		}
		close(c.closed)
	}(ch.NotifyClose(make(chan *amqp091.Error, 1)))
	err = s.cfg.TopologyBuilder.BuildTopology(ch, p, s.cfg, s.log)
	if err == nil {
		err = ch.Qos(s.cfg.Consume.Qos.PrefetchCount, 0, false)
	}
	if err == nil {
		c.deliveries, err = ch.Consume(p.QueueName, c.tag, false, false, false, false, nil)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("consume %s: %w", p.QueueName, err), ignoreClosed(ch.Close()))
	}
	return c, nil
}

// Close stops consuming: the messages handed out get up to the drain time
// to be settled and acked, then the channels close and RabbitMQ requeues
// whatever was not acked.
func (s *batchingSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.subscribed.Wait()
	return nil
}

// consumption is one channel's consumer, from its start until the channel
// fails or the subscriber closes.
type consumption struct {
	s          *batchingSubscriber
	ch         *amqp091.Channel
	tag        string
	deliveries <-chan amqp091.Delivery
	closed     chan struct{} // closed with the channel
}

// run hands deliveries to out until the channel fails, ctx ends or the
// subscriber closes.
func (c *consumption) run(ctx context.Context, out chan<- *message.Message) {
	s := c.s
	// slots holds a token per message handed out and not yet settled.
	slots := make(chan struct{}, s.concurrency)
	settled := make(chan settlement, s.concurrency)
	finish := make(chan struct{}) // the acker sends what it has, then stops
	over := make(chan struct{})   // waiting for handlers' decisions ends
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		c.ack(settled, finish)
	}()
	defer func() {
		close(finish)
		<-ackerDone
		close(over)
		if err := ignoreClosed(c.ch.Close()); err != nil {
			s.log.Error("Cannot close channel", err, nil)
		}
	}()

	for {
		var d amqp091.Delivery
		var ok bool
		select {
		case d, ok = <-c.deliveries:
			if !ok {
				return
			}
		case <-c.closed:
			return
		case <-s.closing:
			c.drain(slots)
			return
		case <-ctx.Done():
			c.drain(slots)
			return
		}
		select {
		case slots <- struct{}{}:
		case <-c.closed:
			return
		case <-s.closing: // d is not acked: RabbitMQ requeues it
			c.drain(slots)
			return
		}
		msg, err := s.cfg.Marshaler.Unmarshal(d)
		if err != nil {
			s.log.Error("Cannot decode delivery, it is requeued", err, nil)
			settled <- settlement{tag: d.DeliveryTag}
			<-slots
			continue
		}
		if d.Redelivered {
			msg.Metadata.Set(amqp.MetadataRedeliveredKey, "true")
		}
		msgCtx, cancel := context.WithCancel(ctx)
		msg.SetContext(msgCtx)
		select {
		case out <- msg:
		case <-c.closed:
			cancel()
			return
		case <-s.closing:
			cancel()
			<-slots
			c.drain(slots)
			return
		}
		go func() {
			// The message's context lives until its handler settles it,
			// even past the end of the channel: a handler cut short would
			// fail the message (and poison it) although RabbitMQ
			// redelivers it anyway.
			defer cancel()
			var st settlement
			select {
			case <-msg.Acked():
				st = settlement{tag: d.DeliveryTag, ack: true}
			case <-msg.Nacked():
				st = settlement{tag: d.DeliveryTag}
			}
			select {
			case settled <- st:
			case <-over:
			}
			<-slots
		}()
	}
}

// drain stops the consumer and waits, up to the drain time, until no
// message handed out is waiting for its handler.
func (c *consumption) drain(slots chan struct{}) {
	if err := c.ch.Cancel(c.tag, false); err != nil {
		return
	}
	deadline := time.NewTimer(c.s.drain)
	defer deadline.Stop()
	for range cap(slots) {
		select {
		case slots <- struct{}{}:
		case <-deadline.C:
			return
		case <-c.closed:
			return
		}
	}
}

// ack feeds the handlers' decisions to an ackWindow. It flushes whenever no
// further decision is waiting: alone, a message is acked at once; under load
// one ack covers all that settled meanwhile.
func (c *consumption) ack(settled <-chan settlement, finish <-chan struct{}) {
	w := newAckWindow(c.ch, c.s.cfg.Consume.Qos.PrefetchCount/4)
	var failed error
	record := func(st settlement) {
		if failed == nil {
			failed = w.settle(st)
		}
	}
	for {
		finishing := false
		select {
		case st := <-settled:
			record(st)
		case <-finish:
			finishing = true
		}
		for waiting := true; waiting; {
			select {
			case st := <-settled:
				record(st)
			default:
				waiting = false
			}
		}
		if failed == nil {
			failed = w.flush()
		}
		if finishing {
			c.reportAckFailure(failed)
			return
		}
	}
}

func (c *consumption) reportAckFailure(err error) {
	if err = ignoreClosed(err); err != nil {
		c.s.log.Error("Cannot ack deliveries; RabbitMQ redelivers them", err, nil)
	}
}

// ignoreClosed drops the error of an operation on a channel that is
// already closed: its deliveries go back to the queue anyway.
func ignoreClosed(err error) error {
	if errors.Is(err, amqp091.ErrClosed) {
		return nil
	}
	return err
}
