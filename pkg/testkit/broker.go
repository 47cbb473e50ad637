package testkit

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/messaging"
)

// PublishEvent publishes events to RabbitMQ the way a service's forwarder
// does (same marshaling, topology and confirms), as if another service had
// sent them. Publishing the same event twice is a redelivery.
func PublishEvent(tb testing.TB, brokerURL string, evs ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := messaging.ConnectBroker(ctx, messaging.BrokerConfig{URL: brokerURL}, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("connect broker: %v", err)
	}
	defer b.Close()
	m := messaging.NewMarshaler()
	for _, ev := range evs {
		msg, err := m.Marshal(ev)
		if err != nil {
			tb.Fatalf("marshal %T: %v", ev, err)
		}
		if err := b.Publisher().Publish(messaging.EventTopic(m.Name(ev)), msg); err != nil {
			tb.Fatalf("publish %T: %v", ev, err)
		}
	}
}

// Channel opens an AMQP channel on brokerURL, closed when the test ends.
func Channel(tb testing.TB, brokerURL string) *amqp091.Channel {
	tb.Helper()
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		tb.Fatalf("dial %s: %v", brokerURL, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("open channel: %v", err)
	}
	return ch
}

// QueueMessages returns how many ready messages a queue holds, or an error
// if it does not exist (yet).
func QueueMessages(brokerURL, queue string) (int, error) {
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("inspect queue %s: %w", queue, err)
	}
	return q.Messages, nil
}

// Queue is what RabbitMQ's management API tells of one queue.
type Queue struct {
	Type      string         `json:"type"`
	Arguments map[string]any `json:"arguments"`
	Messages  int            `json:"messages"`
	// Unacked is how many are delivered and not yet acknowledged. The
	// management API refreshes its figures every few seconds: poll it.
	Unacked int `json:"messages_unacknowledged"`
}

// QueueInfo returns the management API's view of a queue in brokerURL's
// vhost (TEST_RABBITMQ_MANAGEMENT_URL).
func QueueInfo(tb testing.TB, brokerURL, queue string) Queue {
	tb.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		tb.Fatalf("parse broker url: %v", err)
	}
	var q Queue
	manageJSON(tb, http.MethodGet, ManagementURL()+"/api/queues/"+url.PathEscape(strings.TrimPrefix(u.Path, "/"))+"/"+url.PathEscape(queue), "", &q)
	return q
}
