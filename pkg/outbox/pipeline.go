package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// A pipelined forwarder publishes the rows of a batch without waiting for
// each confirm, and builds the batch's DELETE only once every publish of it
// was confirmed (ForwarderConfig.Pipeline).
//
// watermill-sql hands a forwarder the rows of a batch one at a time, each
// after the previous one was acked, and watermill-amqp's Publish returns only
// once RabbitMQ confirmed the message: the last row of a batch of n waits for
// n confirms one after another, and a quorum queue confirms only after its
// log is on disk. Pipelined, the n confirms are awaited together. If any
// publish failed, the DELETE is not built: watermill-sql rolls the
// transaction back and the whole batch is read and published again (the
// confirmed ones twice; consumers deduplicate), so a row is still deleted
// only after its message was confirmed.
//
// pipelined returns a worker that pipelines its batches: one inflight shared
// by its publisher, its schema and its offsets adapter. stop ends a wait
// for confirms when the forwarder closes.
func pipelined(schema skipLockedSchema, offsets forwardedOffsets, pub message.Publisher, stop <-chan struct{}) worker {
	pending := &inflight{closing: stop}
	return worker{
		schema:  pipelinedSchema{schema, pending},
		offsets: confirmingOffsets{offsets, pending},
		pub:     pipelinedPublisher{pub: pub, inflight: pending},
	}
}

// One inflight belongs to one forwarder worker, whose loop calls the
// publisher, the schema and the offsets adapter one after another.
type inflight struct {
	mu   sync.Mutex
	n    int           // publishes running
	idle chan struct{} // closed when n drops to 0
	err  error
	// closing ends a wait: a closed forwarder must not hang on a confirm
	// that may never come. Its batch is rolled back and published later.
	closing <-chan struct{}
}

var errClosingUnconfirmed = errors.New("outbox forwarder closed before its publishes were confirmed")

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
		if f.n--; f.n == 0 {
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

// pipelinedPublisher starts each publish and reports success at once.
type pipelinedPublisher struct {
	pub      message.Publisher
	inflight *inflight
}

func (p pipelinedPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		// The row's delivery context ends when Publish returns; the publish
		// outlives it (watermill-amqp publishes in the message's context).
		m.SetContext(context.WithoutCancel(m.Context()))
	}
	p.inflight.start(func() error { return p.pub.Publish(topic, msgs...) })
	return nil
}

// Close does nothing: the publisher underneath belongs to the broker.
func (pipelinedPublisher) Close() error { return nil }

// confirmingOffsets builds a batch's DELETE once its publishes are confirmed.
type confirmingOffsets struct {
	forwardedOffsets
	inflight *inflight
}

func (o confirmingOffsets) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	if err := o.inflight.wait(); err != nil {
		return wsql.Query{}, fmt.Errorf("publish outbox batch of %d rows (it stays in the outbox and is published again): %w", len(p.Rows), err)
	}
	return o.forwardedOffsets.AckMessageQuery(p)
}

// pipelinedSchema forgets, before it reads a batch, the publishes of a batch
// that was not deleted: its rows are read again.
type pipelinedSchema struct {
	skipLockedSchema
	inflight *inflight
}

func (s pipelinedSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	_ = s.inflight.wait()
	return s.skipLockedSchema.SelectQuery(p)
}
