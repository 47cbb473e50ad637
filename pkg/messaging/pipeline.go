package messaging

import (
	"context"
	"errors"
	"fmt"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// A forwarder's batch is published with its confirms awaited together.
//
// watermill-sql hands a forwarder the rows of a batch one at a time, each
// after the previous one was acked, and watermill-amqp's Publish returns
// only once RabbitMQ confirmed the message: so the last row of a batch of n
// waited for n confirms, one after another, while the batch's transaction
// held its rows. Here the forwarder's publisher starts each publish and
// returns at once (pipelinedPublisher); the batch's DELETE, which
// watermill-sql builds through the offsets adapter after the last row, is
// built only once every publish of the batch has been confirmed
// (confirmingOffsets). If any failed, the adapter fails: watermill-sql rolls
// the transaction back and the whole batch is read and published again, so
// a row is deleted only after its message was confirmed, as before. (The
// messages that were confirmed are then published twice; consumers
// deduplicate, as for any redelivery.) Neither library offers this, hence
// the two small wrappers.
//
// One inflight belongs to one forwarder worker: its publisher, its offsets
// adapter and its schema adapter share it. watermill-sql calls them one
// after another from that worker's loop, never at once.
type inflight struct {
	mu   sync.Mutex
	n    int           // publishes running
	idle chan struct{} // closed when n drops to 0
	err  error
	// closing ends a wait early: a forwarder that is closed must not hang
	// on a confirm that may never come (a blocked broker). Its batch is
	// rolled back and published again later.
	closing <-chan struct{}
}

var errClosingUnconfirmed = errors.New("outbox forwarder closed before its publishes were confirmed")

// start runs publish in a goroutine of its own.
func (f *inflight) start(publish func() error) {
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	go func() {
		err := publish()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.err = errors.Join(f.err, err)
		f.n--
		if f.n == 0 {
			close(f.idle)
		}
	}()
}

// wait waits for the publishes started so far and returns their errors,
// forgetting them.
func (f *inflight) wait() error {
	f.mu.Lock()
	n, idle := f.n, f.idle
	f.mu.Unlock()
	if n > 0 {
		select {
		case <-idle:
		case <-f.closing:
			return errClosingUnconfirmed
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.err
	f.err = nil
	return err
}

// pipelinedPublisher starts each publish and reports success at once; the
// outcome is collected by confirmingOffsets before the batch's rows are
// deleted.
type pipelinedPublisher struct {
	pub      message.Publisher
	inflight *inflight
}

func (p pipelinedPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		// The forwarder gives each message the context of the outbox row's
		// delivery, which ends when Publish returns; the publish outlives it
		// (watermill-amqp publishes in the message's context).
		m.SetContext(context.WithoutCancel(m.Context()))
	}
	p.inflight.start(func() error { return p.pub.Publish(topic, msgs...) })
	return nil
}

// Close does nothing: the publisher underneath is shared by the forwarders
// and closed by its owner.
func (pipelinedPublisher) Close() error { return nil }

// confirmingOffsets builds a batch's DELETE only once every message of the
// batch was confirmed.
//
// It also deletes only the rows up to the last one forwarded. watermill-sql
// stops a batch early when the subscriber is closed while a row is being
// handed over, and still passes every row of the batch, forwarded or not,
// to the offsets adapter, whose DELETE would then drop rows that were never
// published.
type confirmingOffsets struct {
	wsql.PostgreSQLQueueOffsetsAdapter
	inflight *inflight
}

func (o confirmingOffsets) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	if err := o.inflight.wait(); err != nil {
		return wsql.Query{}, fmt.Errorf("publish outbox batch of %d rows (it stays in the outbox and is published again): %w", len(p.Rows), err)
	}
	p.Rows = forwarded(p.Rows, p.LastRow)
	q, err := o.PostgreSQLQueueOffsetsAdapter.AckMessageQuery(p)
	if err != nil {
		return q, fmt.Errorf("outbox ack query: %w", err)
	}
	return q, nil
}

// forwarded is rows up to and including last, in the order the batch was
// read and forwarded.
func forwarded(rows []wsql.Row, last wsql.Row) []wsql.Row {
	for i, r := range rows {
		if r.Offset == last.Offset {
			return rows[:i+1]
		}
	}
	return rows
}
