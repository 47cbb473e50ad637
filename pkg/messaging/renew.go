package messaging

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
)

// renewingPublisher is the broker's confirming publisher, renewed (a new
// pool of channels on the same connection) when RabbitMQ stops confirming
// publishes on it.
//
// A channel that starts publishing to a quorum queue while the queue elects
// a new leader on another node (its old leader's node was lost, taking the
// service's connection with it) can be left nacking every later publish on
// that channel (seen with RabbitMQ 3.10: e2e TestCluster_node_loss_under_load,
// "delivery not confirmed" for every publish, forever, while channels opened
// later on the same node are confirmed). watermill-amqp keeps its pooled
// channels for the life of the connection, so the forwarder would retry
// into the same channels forever. Renewing replaces them; at most once a
// second, and a renewal that fails (the connection is down) leaves the
// publisher as it was, to reopen its channels itself when the connection
// is back.
type renewingPublisher struct {
	conn *amqp.ConnectionWrapper
	cfg  amqp.Config
	log  watermill.LoggerAdapter

	mu      sync.Mutex
	cur     *amqp.Publisher
	gen     uint64
	renewed time.Time
}

// renewInterval is the least time between two renewals.
const renewInterval = time.Second

func newRenewingPublisher(cfg amqp.Config, log watermill.LoggerAdapter, conn *amqp.ConnectionWrapper) (*renewingPublisher, error) {
	pub, err := amqp.NewPublisherWithConnection(cfg, log, conn)
	if err != nil {
		return nil, err //nolint:wrapcheck // wrapped by the caller
	}
	return &renewingPublisher{conn: conn, cfg: cfg, log: log, cur: pub, renewed: time.Now()}, nil
}

func (p *renewingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	pub, gen := p.cur, p.gen
	p.mu.Unlock()
	err := pub.Publish(topic, msgs...)
	if IsNotConfirmed(err) {
		p.renew(gen)
	}
	return err //nolint:wrapcheck // the publisher's own error, as callers expect
}

// renew replaces the publisher of generation gen, unless it was replaced
// already or less than renewInterval ago.
func (p *renewingPublisher) renew(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen || time.Since(p.renewed) < renewInterval {
		return
	}
	p.renewed = time.Now()
	pub, err := amqp.NewPublisherWithConnection(p.cfg, p.log, p.conn)
	if err != nil {
		p.log.Error("renew the publisher's channels", err, nil)
		return
	}
	old := p.cur
	p.cur, p.gen = pub, p.gen+1
	p.log.Error("renewed the publisher's channels", errors.New("publishes were not confirmed"), nil)
	// Its publishes still waiting for a channel or a confirm fail, and
	// their callers publish again.
	go func() { _ = p.closePublisher(old) }()
}

func (p *renewingPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closePublisher(p.cur)
}

// closePublisher closes a watermill-amqp publisher. When a pooled channel
// failed to reopen while the connection was down, watermill-amqp keeps it
// with a nil *amqp091.Channel and its pool's Close panics on it. Such a
// channel holds nothing to close (the connection's Close, which follows,
// closes the others), so the panic is logged instead of crashing a process
// that is shutting down after an outage.
func (p *renewingPublisher) closePublisher(pub *amqp.Publisher) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Info("a publisher channel that failed to reopen had nothing to close", watermill.LogFields{"panic": fmt.Sprint(r)})
			err = nil
		}
	}()
	return pub.Close() //nolint:wrapcheck // the publisher's own error
}
