package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// batching is one test's ack-batching subscription on its own vhost.
type batching struct {
	url   string // what the test publishes and inspects through
	sub   messaging.Subscription
	input message.Subscriber
}

// newBatching subscribes, through brokerURL, to a fresh topic with the
// ack-batching subscriber, handling concurrency messages at once.
func newBatching(t *testing.T, url, brokerURL string, concurrency int) (batching, <-chan *message.Message) {
	t.Helper()
	sub := messaging.Subscription{Service: "test", Handler: "test.Batch", Topic: messaging.EventTopic("Batched")}
	b, err := messaging.ConnectBroker(t.Context(), messaging.BrokerConfig{
		URL: brokerURL, Consumers: concurrency, AckBatching: true, DrainTimeout: 10 * time.Second,
		ReconnectMaxInterval: 200 * time.Millisecond,
	}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	input, err := b.Subscribers().Subscriber(sub)
	require.NoError(t, err)
	t.Cleanup(func() { _ = input.Close() })
	msgs, err := input.Subscribe(context.Background(), sub.Topic)
	require.NoError(t, err)
	return batching{url: url, sub: sub, input: input}, msgs
}

// publish sends n messages with the UUIDs "<prefix>-0" … to the topic.
func (b batching) publish(t *testing.T, prefix string, n int) {
	t.Helper()
	ch := testkit.Channel(t, b.url)
	for i := range n {
		require.NoError(t, ch.PublishWithContext(t.Context(), b.sub.Topic, "", false, false, amqp091.Publishing{
			Headers: amqp091.Table{"_watermill_message_uuid": fmt.Sprintf("%s-%d", prefix, i)}, DeliveryMode: amqp091.Persistent,
		}))
	}
}

func (b batching) ready(t *testing.T) int {
	t.Helper()
	n, err := testkit.QueueMessages(b.url, b.sub.Queue())
	require.NoError(t, err)
	return n
}

// next waits for the next message handed out.
func next(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		require.True(t, ok, "the subscription ended")
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no message handed out")
		return nil
	}
}

// waitUnacked polls the management API until the queue has want
// unacknowledged deliveries and nothing else.
func (b batching) waitUnacked(t *testing.T, want int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		if q := testkit.QueueInfo(t, b.url, b.sub.Queue()); q.Unacked != want || q.Messages != want {
			return fmt.Errorf("%d messages, %d unacked; want %d, all unacked", q.Messages, q.Unacked, want)
		}
		return nil
	})
}

func TestBatchingSubscriber_hands_out_concurrency_messages_and_acks_them_all(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewVhost(t)
	const concurrency, n = 8, 200
	b, msgs := newBatching(t, url, url, concurrency)
	b.publish(t, "m", n)

	// Take the messages concurrency at a time, as the router does, and ack
	// each group in reverse: every ack but the last waits for the one
	// below it.
	seen := map[string]bool{}
	for len(seen) < n {
		group := make([]*message.Message, 0, concurrency)
		for len(group) < concurrency && len(seen)+len(group) < n {
			group = append(group, next(t, msgs))
		}
		select {
		case m := <-msgs:
			t.Fatalf("message %s handed out while %d were unsettled", m.UUID, concurrency)
		default:
		}
		for i := len(group) - 1; i >= 0; i-- {
			assert.False(t, seen[group[i].UUID], "handed out twice: %s", group[i].UUID)
			seen[group[i].UUID] = true
			group[i].Ack()
		}
	}
	require.NoError(t, b.input.Close())
	_, open := <-msgs
	assert.False(t, open, "Close ends the subscription")
	assert.Zero(t, b.ready(t), "every handled message was acked: none came back when the channel closed")
}

func TestBatchingSubscriber_nacked_message_is_redelivered(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewVhost(t)
	b, msgs := newBatching(t, url, url, 4)
	b.publish(t, "m", 1)

	first := next(t, msgs)
	assert.False(t, amqp.IsMessageRedelivered(first))
	first.Nack()
	again := next(t, msgs)
	assert.Equal(t, first.UUID, again.UUID)
	assert.True(t, amqp.IsMessageRedelivered(again))
	again.Ack()
	require.NoError(t, b.input.Close())
	assert.Zero(t, b.ready(t))
}

// Close lets the messages handed out finish and acks them; what was
// prefetched but not handed out goes back to the queue.
func TestBatchingSubscriber_Close_acks_what_its_handlers_finish(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewVhost(t)
	b, msgs := newBatching(t, url, url, 2)
	b.publish(t, "m", 3)

	handed := []*message.Message{next(t, msgs), next(t, msgs)}
	closed := make(chan error, 1)
	go func() { closed <- b.input.Close() }()
	for _, m := range handed {
		m.Ack()
	}
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	testkit.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := b.ready(t); n != 1 {
			return fmt.Errorf("%d ready, want the one never handed out", n)
		}
		return nil
	})
	d, ok, err := testkit.Channel(t, url).Get(b.sub.Queue(), true)
	require.NoError(t, err)
	require.True(t, ok)
	assert.NotContains(t, []string{handed[0].UUID, handed[1].UUID}, d.Headers["_watermill_message_uuid"])
}

func TestBatchingSubscriber_Subscribe_fails_once_closed(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewVhost(t)
	b, _ := newBatching(t, url, url, 1)
	require.NoError(t, b.input.Close())
	_, err := b.input.Subscribe(t.Context(), b.sub.Topic)
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
}
