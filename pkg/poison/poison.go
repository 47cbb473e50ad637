// Package poison is the operator's side of the poison queues: it lists,
// shows, replays and purges the messages that the services' routers parked
// there (messaging.NewRouter), for cmd/orderflow.
package poison

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/messaging"
)

// Metadata a replay adds to a message.
const (
	MetadataReplayCount = "replay_count"
	MetadataReplayedAt  = "replayed_at"
)

// uuidHeader is where watermill-amqp keeps the message UUID.
const uuidHeader = "_watermill_message_uuid"

// Message is one message in a poison queue.
type Message struct {
	Queue       string            `json:"queue"`
	ID          string            `json:"id"`
	Event       string            `json:"event"`
	Handler     string            `json:"handler"`
	Topic       string            `json:"topic"`
	Subscriber  string            `json:"subscriber,omitempty"`
	Reason      string            `json:"reason"`
	ErrorType   string            `json:"error_type,omitempty"`
	Attempts    int               `json:"attempts,omitempty"`
	FirstFailed time.Time         `json:"first_failure_at,omitzero"`
	LastFailed  time.Time         `json:"last_failure_at,omitzero"`
	Replays     int               `json:"replay_count,omitempty"`
	Metadata    map[string]string `json:"metadata"`
	Payload     []byte            `json:"payload"`
	// TargetQueue is the queue a replay sends the message back to: the
	// failed handler's own queue.
	TargetQueue string `json:"target_queue"`
}

// Filter selects poison messages. Empty fields match everything.
type Filter struct {
	IDs     []string
	Handler string
	Event   string
	Reason  string // substring
}

// Match reports whether m passes the filter.
func (f Filter) Match(m Message) bool {
	return (len(f.IDs) == 0 || slices.Contains(f.IDs, m.ID)) &&
		(f.Handler == "" || m.Handler == f.Handler) &&
		(f.Event == "" || m.Event == f.Event) &&
		(f.Reason == "" || strings.Contains(strings.ToLower(m.Reason), strings.ToLower(f.Reason)))
}

// Age is how long ago the message last failed.
func (m Message) Age(now time.Time) time.Duration {
	if m.LastFailed.IsZero() {
		return 0
	}
	return now.Sub(m.LastFailed)
}

// Inspector lists, replays and purges poison queues over one AMQP
// connection.
//
// RabbitMQ cannot read a queue without taking its messages, so every
// operation takes the messages it needs unacknowledged, in queue order, and
// gives back what it does not remove by rejecting them with requeue: a
// message is never lost, and the ones given back keep their order at the
// head of the queue. Nothing else should consume a poison queue meanwhile.
type Inspector struct {
	conn *amqp091.Connection
}

// Dial connects to brokerURL.
func Dial(brokerURL string) (*Inspector, error) {
	conn, err := amqp091.DialConfig(brokerURL, amqp091.Config{
		Dial:       amqp091.DefaultDial(5 * time.Second),
		Properties: amqp091.Table{"connection_name": "orderflow-poison-cli"},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot reach RabbitMQ at %s: %w", redactURL(brokerURL), err)
	}
	return &Inspector{conn: conn}, nil
}

// Close closes the connection; messages still taken go back to their queue.
func (p *Inspector) Close() error { return p.conn.Close() }

func redactURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndex(raw, "@"); j > i {
			if k := strings.Index(raw[i+3:j], ":"); k >= 0 {
				return raw[:i+3+k+1] + "***" + raw[j:]
			}
		}
	}
	return raw
}

// taken is a batch of messages read, unacknowledged, from one queue.
type taken struct {
	conn       *amqp091.Connection
	ch         *amqp091.Channel
	queue      string
	deliveries []amqp091.Delivery
	messages   []Message
	removed    map[int]bool
}

// remove acks (deletes) the i-th message.
func (t *taken) remove(i int) error {
	if err := t.deliveries[i].Ack(false); err != nil {
		return fmt.Errorf("remove %s from %s: %w", t.messages[i].ID, t.queue, err)
	}
	t.removed[i] = true
	return nil
}

// take reads every message of queue without removing any. A queue that
// does not exist is empty.
func (p *Inspector) take(queue string) (*taken, error) {
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp091.NotFound {
		return &taken{queue: queue}, nil // the channel is closed by the error
	}
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("inspect %s: %w", queue, err)
	}
	t := &taken{conn: p.conn, ch: ch, queue: queue, removed: map[int]bool{}}
	for range q.Messages {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			_ = ch.Close()
			return nil, fmt.Errorf("read %s: %w", queue, err)
		}
		if !ok {
			break
		}
		t.deliveries = append(t.deliveries, d)
		t.messages = append(t.messages, parsePoison(queue, d))
	}
	return t, nil
}

// giveBack returns every message not removed to the queue, in order, by
// closing the channel, and waits until the queue has them back.
//
// Closing rather than nacking with requeue matters on RabbitMQ 4: a quorum
// queue counts a nack towards the message's delivery limit (20 by default
// there) but not a return caused by a closed channel, so listing a poison
// queue many times never makes RabbitMQ drop what it lists.
func (t *taken) giveBack() error {
	if t.ch == nil {
		return nil
	}
	if err := t.ch.Close(); err != nil {
		return fmt.Errorf("close channel: %w", err)
	}
	return t.settle()
}

// settle waits until the queue counts the given-back messages as ready
// again. A quorum queue applies returns through its Raft log, so for a
// moment after the nacks they are neither ready nor taken; the next
// operation must not read the queue before then, or it would miss them.
func (t *taken) settle() error {
	want := len(t.deliveries) - len(t.removed)
	if want == 0 {
		return nil
	}
	ch, err := t.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(t.queue, true, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", t.queue, err)
		}
		if q.Messages >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d messages given back are not ready yet", t.queue, want-q.Messages, want)
		}
		time.Sleep(5 * time.Millisecond) // polling the broker with a deadline
	}
}

// List returns the messages of the poison queues that match f, in queue
// order, and leaves the queues as they were.
func (p *Inspector) List(queues []string, f Filter) ([]Message, error) {
	var out []Message
	for _, q := range queues {
		t, err := p.take(q)
		if err != nil {
			return nil, err
		}
		for _, m := range t.messages {
			if f.Match(m) {
				out = append(out, m)
			}
		}
		if err := t.giveBack(); err != nil {
			return nil, fmt.Errorf("give back %s: %w", q, err)
		}
	}
	return out, nil
}

// ErrNotFound is returned for ids that are in none of the poison queues.
var ErrNotFound = errors.New("not in the poison queues")

// ReplayOptions tunes Replay.
type ReplayOptions struct {
	// AfterPublish runs after a message was republished and confirmed and
	// before it is removed from the poison queue. An error stops the replay
	// there, as a crash would. For tests.
	AfterPublish func(Message) error
	Now          func() time.Time
}

// Replay republishes the matching messages to the queues of the handlers
// that failed them, with publisher confirms, and removes each from its poison
// queue once RabbitMQ confirmed the copy. A replay that dies between the two
// leaves the message in the poison queue and a copy on its way: a duplicate,
// which the handlers absorb, never a loss. It returns what it replayed.
func (p *Inspector) Replay(ctx context.Context, queues []string, f Filter, opt ReplayOptions) ([]Message, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	pub, err := p.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publish channel: %w", err)
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		return nil, fmt.Errorf("enable confirms: %w", err)
	}
	returns := pub.NotifyReturn(make(chan amqp091.Return, 1))
	return p.removeEach(queues, f, func(d amqp091.Delivery, m Message) error {
		if err := republish(ctx, pub, returns, d, m, opt.Now()); err != nil {
			return err
		}
		if opt.AfterPublish != nil {
			return opt.AfterPublish(m)
		}
		return nil
	})
}

func republish(ctx context.Context, ch *amqp091.Channel, returns <-chan amqp091.Return, d amqp091.Delivery, m Message, now time.Time) error {
	if m.TargetQueue == "" {
		return fmt.Errorf("message %s names no handler queue to replay to", m.ID)
	}
	headers := amqp091.Table{}
	for k, v := range d.Headers {
		if strings.HasSuffix(k, "_poisoned") || strings.HasPrefix(k, "x-") {
			continue // the failure's record, and RabbitMQ's own headers
		}
		headers[k] = v
	}
	headers[MetadataReplayCount] = strconv.Itoa(m.Replays + 1)
	headers[MetadataReplayedAt] = now.UTC().Format(time.RFC3339Nano)
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", m.TargetQueue, true, false, amqp091.Publishing{
		Headers: headers, Body: d.Body, ContentType: d.ContentType, MessageId: d.MessageId,
		Timestamp: d.Timestamp, DeliveryMode: amqp091.Persistent,
	})
	if err != nil {
		return fmt.Errorf("republish %s: %w", m.ID, err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm %s: %w", m.ID, err)
	}
	select {
	case r := <-returns: // a mandatory message that reached no queue comes back before its ack
		return fmt.Errorf("replay %s: queue %s does not exist (%s)", m.ID, r.RoutingKey, r.ReplyText)
	default:
	}
	if !ok {
		return fmt.Errorf("replay %s: RabbitMQ did not confirm the copy", m.ID)
	}
	return nil
}

// Purge removes the matching messages for good and returns them.
func (p *Inspector) Purge(queues []string, f Filter) ([]Message, error) {
	return p.removeEach(queues, f, nil)
}

// removeEach takes the messages of each queue in turn and removes those that
// match f, in queue order, each once act, if not nil, succeeded for it. An
// error stops it there and gives the queue's other messages back. It returns
// the messages removed and, once every queue is done, an ErrNotFound for
// each id of f.IDs that it removed no message of.
func (p *Inspector) removeEach(queues []string, f Filter, act func(d amqp091.Delivery, m Message) error) ([]Message, error) {
	var done []Message
	for _, q := range queues {
		t, err := p.take(q)
		if err != nil {
			return done, err
		}
		for i, m := range t.messages {
			if !f.Match(m) {
				continue
			}
			if act != nil {
				if err := act(t.deliveries[i], m); err != nil {
					return done, errors.Join(err, t.giveBack())
				}
			}
			if err := t.remove(i); err != nil {
				return done, errors.Join(err, t.giveBack())
			}
			done = append(done, m)
		}
		if err := t.giveBack(); err != nil {
			return done, fmt.Errorf("give back %s: %w", q, err)
		}
	}
	return done, missing(f.IDs, done)
}

func missing(ids []string, found []Message) error {
	var errs []error
	for _, id := range ids {
		if !slices.ContainsFunc(found, func(m Message) bool { return m.ID == id }) {
			errs = append(errs, fmt.Errorf("message %s: %w", id, ErrNotFound))
		}
	}
	return errors.Join(errs...)
}

func parsePoison(queue string, d amqp091.Delivery) Message {
	md := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		md[k] = messaging.HeaderString(v)
	}
	m := Message{
		Queue: queue, ID: md[uuidHeader], Event: md[messaging.MetadataEventName],
		Handler: md["handler_poisoned"], Topic: md["topic_poisoned"], Subscriber: md["subscriber_poisoned"],
		Reason: md["reason_poisoned"], ErrorType: md[messaging.MetadataErrorType],
		Metadata: md, Payload: d.Body,
	}
	if m.ID == "" {
		m.ID = d.MessageId
	}
	if m.ID == "" { // published by hand without an id: name it by its body
		sum := sha256.Sum256(d.Body)
		m.ID = "body-" + hex.EncodeToString(sum[:6])
	}
	m.Attempts, _ = strconv.Atoi(md[messaging.MetadataAttempts])
	m.Replays, _ = strconv.Atoi(md[MetadataReplayCount])
	m.FirstFailed, _ = time.Parse(time.RFC3339Nano, md[messaging.MetadataFirstFailureAt])
	m.LastFailed, _ = time.Parse(time.RFC3339Nano, md[messaging.MetadataLastFailureAt])
	if m.Topic != "" && m.Handler != "" {
		m.TargetQueue = messaging.Subscription{Topic: m.Topic, Handler: m.Handler}.Queue()
	}
	// Dead-lettered by RabbitMQ (the delivery limit) rather than by the
	// poison middleware: x-death names the queue it came from.
	if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if death, ok := deaths[0].(amqp091.Table); ok {
			if m.TargetQueue == "" {
				m.TargetQueue, _ = death["queue"].(string)
			}
			if m.Reason == "" {
				reason, _ := death["reason"].(string)
				m.Reason = "dead-lettered by RabbitMQ: " + reason
			}
			if m.LastFailed.IsZero() {
				m.LastFailed, _ = death["time"].(time.Time)
			}
		}
	}
	return m
}
