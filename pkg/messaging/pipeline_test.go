package messaging_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// recordingPublisher stands for the broker's confirming publisher: Publish
// returns once the message is "confirmed", or fails for the order ids in
// fail (once each), or when the message's context has ended (watermill-amqp
// publishes in it). The first batch's publishes wait until all of them have
// started, which only a forwarder that publishes a batch together passes.
type recordingPublisher struct {
	batch int
	mu    sync.Mutex
	fail  map[string]bool
	ok    map[string]int // order id → confirmed publishes
	calls int
	all   chan struct{} // closed once the first batch's publishes have all started
}

func (p *recordingPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		var ev struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			return err
		}
		p.mu.Lock()
		p.calls++
		if p.calls == p.batch {
			close(p.all)
		}
		first := p.calls <= p.batch
		p.mu.Unlock()
		if first {
			select {
			case <-p.all:
			case <-time.After(10 * time.Second):
				return errors.New("the batch's publishes did not run together")
			}
		}
		if err := m.Context().Err(); err != nil {
			return fmt.Errorf("publish in the message's context: %w", err) // as watermill-amqp does
		}
		p.mu.Lock()
		if p.fail[ev.OrderID] {
			delete(p.fail, ev.OrderID)
			p.mu.Unlock()
			return fmt.Errorf("nack for %s", ev.OrderID)
		}
		p.ok[ev.OrderID]++
		p.mu.Unlock()
	}
	return nil
}

func (*recordingPublisher) Close() error { return nil }

// A forwarder publishes a batch together and deletes it only once every
// message of it was confirmed: one failed publish leaves the whole batch in
// the outbox, and it is published again.
func TestForwarder_deletes_a_batch_only_once_every_publish_is_confirmed(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	e.publish(t, t.Context(), placedEvent("o-1"), placedEvent("o-2"), placedEvent("o-3"), placedEvent("o-4"))

	pub := &recordingPublisher{batch: 4, fail: map[string]bool{"o-3": true}, ok: map[string]int{}, all: make(chan struct{})}
	fwd, err := messaging.NewForwarder(e.db, pub, messaging.ForwarderConfig{Workers: 1, BatchSize: 4, PollInterval: 10 * time.Millisecond}, watermill.NopLogger{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(t.Context()) }()
	t.Cleanup(func() {
		require.NoError(t, fwd.Close())
		assert.NoError(t, <-done)
	})

	testkit.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if n := testkit.CountRows(t, e.db, messaging.OutboxTable); n != 0 {
			return fmt.Errorf("%d outbox rows left", n)
		}
		return nil
	})
	pub.mu.Lock()
	defer pub.mu.Unlock()
	assert.Equal(t, map[string]int{"o-1": 2, "o-2": 2, "o-3": 1, "o-4": 2}, pub.ok,
		"the batch with the failed publish stayed and went out again; o-3 only the second time")
}

// blockedPublisher never gets its confirms, as a broker that blocks
// publishers (a memory alarm) would leave it.
type blockedPublisher struct {
	started chan struct{}
	release chan struct{}
}

func (p blockedPublisher) Publish(string, ...*message.Message) error {
	select {
	case p.started <- struct{}{}:
	default:
	}
	<-p.release
	return errors.New("released")
}

func (blockedPublisher) Close() error { return nil }

// Closing a forwarder does not wait for confirms that may never come; the
// unconfirmed batch stays in the outbox.
func TestForwarder_close_does_not_wait_for_missing_confirms(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	e := newEnv(t)
	e.publish(t, t.Context(), placedEvent("o-1"), placedEvent("o-2"))
	pub := blockedPublisher{started: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(func() { close(pub.release) })
	fwd, err := messaging.NewForwarder(e.db, pub, messaging.ForwarderConfig{Workers: 1, BatchSize: 4, PollInterval: 10 * time.Millisecond}, watermill.NopLogger{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(t.Context()) }()
	select {
	case <-pub.started:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing was published")
	}

	closed := make(chan error, 1)
	go func() { closed <- fwd.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Close waits for confirms that never come")
	}
	assert.NoError(t, <-done)
	assert.Equal(t, 2, testkit.CountRows(t, e.db, messaging.OutboxTable), "the unconfirmed batch stays in the outbox")
}
