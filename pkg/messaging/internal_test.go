package messaging

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConcurrent_handles_n_messages_at_once(t *testing.T) {
	t.Parallel()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	const n = 4
	sub := Concurrent(pubsub, n)
	msgs, err := sub.Subscribe(context.Background(), "topic")
	require.NoError(t, err)

	for range n {
		require.NoError(t, pubsub.Publish("topic", message.NewMessage(watermill.NewUUID(), nil)))
	}
	// Each of the n subscriptions hands out a message and waits for its ack
	// before the next: n are out at once without any being acked. (gochannel
	// gives every subscription every message, where RabbitMQ's competing
	// consumers split them; this test is about concurrency, and the e2e
	// scale-out test counts the consumers on a real queue.)
	var got []*message.Message
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("only %d of %d messages handed out before any ack", len(got), n)
		}
	}
	var wg sync.WaitGroup
	for _, m := range got {
		wg.Go(func() { m.Ack() })
	}
	wg.Wait()
	assert.Same(t, pubsub, Concurrent(pubsub, 1), "n below 2 is the subscriber itself")
}
