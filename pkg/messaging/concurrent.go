package messaging

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// concurrentSubscriber subscribes n times to the same topic and merges the
// messages. Watermill's router runs every message in a goroutine of its own,
// but an AMQP subscription hands out its next message only after the
// previous one was acked, so one subscription means one message at a time
// and a handler's throughput is 1/latency. Each of the n subscriptions is an
// AMQP consumer with its own channel and prefetch: up to n messages of the
// queue are handled at once, by one process, with at-least-once delivery
// unchanged (a message is acked only after its handler succeeded).
type concurrentSubscriber struct {
	message.Subscriber
	n int
}

// Concurrent wraps sub so that each Subscribe handles up to n messages at
// once. n below 2 returns sub itself.
func Concurrent(sub message.Subscriber, n int) message.Subscriber {
	if n < 2 {
		return sub
	}
	return concurrentSubscriber{Subscriber: sub, n: n}
}

func (s concurrentSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ins := make([]<-chan *message.Message, 0, s.n)
	for range s.n {
		in, err := s.Subscriber.Subscribe(ctx, topic)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("subscribe to %s: %w", topic, err), s.Close())
		}
		ins = append(ins, in)
	}
	out := make(chan *message.Message)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			for msg := range in {
				out <- msg
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}
