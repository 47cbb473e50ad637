package poison_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/poison"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// poisonQueue declares poison.test in a fresh vhost and fills it with n
// messages as the poison middleware would leave them. It returns the vhost
// URL and the message ids in queue order.
func poisonQueue(t *testing.T, n int) (string, []string) {
	t.Helper()
	broker := testkit.NewVhost(t)
	ch := testkit.Channel(t, broker)
	_, err := ch.QueueDeclare("poison.test", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	target := messaging.Subscription{Topic: "events.OrderPlaced", Handler: "test.Handler"}.Queue()
	_, err = ch.QueueDeclare(target, true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	ids := make([]string, n)
	for i := range n {
		ids[i] = uuid.NewString()
		now := time.Now().UTC().Format(time.RFC3339Nano)
		conf, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", "poison.test", false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent,
			Body:         []byte(fmt.Sprintf(`{"event_id":%q,"n":%d}`, ids[i], i)),
			Headers: amqp091.Table{
				"_watermill_message_uuid":        ids[i],
				"name":                           "OrderPlaced",
				"correlation_id":                 "corr-" + ids[i],
				"reason_poisoned":                fmt.Sprintf("failure %d", i),
				"topic_poisoned":                 "events.OrderPlaced",
				"handler_poisoned":               "test.Handler",
				messaging.MetadataAttempts:       "6",
				messaging.MetadataErrorType:      "transient:*errors.errorString",
				messaging.MetadataFirstFailureAt: now,
				messaging.MetadataLastFailureAt:  now,
				messaging.MetadataServiceVersion: "v1",
			},
		})
		require.NoError(t, err)
		ok, err := conf.WaitContext(t.Context())
		require.NoError(t, err)
		require.True(t, ok)
	}
	return broker, ids
}

func inspector(t *testing.T, broker string) *poison.Inspector {
	t.Helper()
	in, err := poison.Dial(broker)
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Close() })
	return in
}

// drain consumes a queue for good and returns the ids in order.
func drain(t *testing.T, broker, queue string) []string {
	t.Helper()
	ch := testkit.Channel(t, broker)
	var ids []string
	for {
		d, ok, err := ch.Get(queue, true)
		require.NoError(t, err)
		if !ok {
			return ids
		}
		ids = append(ids, fmt.Sprint(d.Headers["_watermill_message_uuid"]))
	}
}

func ids(msgs []poison.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestPoisonInspector_List_leaves_contents_and_order_unchanged(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker, want := poisonQueue(t, 5)
	in := inspector(t, broker)
	queues := []string{"poison.test", "poison.absent"}

	for range 3 {
		got, err := in.List(queues, poison.Filter{})
		require.NoError(t, err)
		assert.Equal(t, want, ids(got))
	}
	one, err := in.List(queues, poison.Filter{IDs: want[2:3]})
	require.NoError(t, err)
	require.Len(t, one, 1)
	m := one[0]
	assert.Equal(t, "OrderPlaced", m.Event)
	assert.Equal(t, "test.Handler", m.Handler)
	assert.Equal(t, "events.OrderPlaced", m.Topic)
	assert.Equal(t, "failure 2", m.Reason)
	assert.Equal(t, 6, m.Attempts)
	assert.Equal(t, "corr-"+want[2], m.Metadata["correlation_id"])
	assert.Equal(t, "events.OrderPlaced_test.Handler", m.TargetQueue)
	assert.JSONEq(t, fmt.Sprintf(`{"event_id":%q,"n":2}`, want[2]), string(m.Payload))

	filtered, err := in.List(queues, poison.Filter{Reason: "FAILURE 4"})
	require.NoError(t, err)
	assert.Equal(t, want[4:], ids(filtered), "reason filter is a case-insensitive substring")

	assert.Equal(t, want, drain(t, broker, "poison.test"), "the queue still holds every message, in order")
}

func TestPoisonInspector_Replay_moves_messages_to_their_handler_queue(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker, all := poisonQueue(t, 4)
	in := inspector(t, broker)
	target := "events.OrderPlaced_test.Handler"

	done, err := in.Replay(t.Context(), []string{"poison.test"}, poison.Filter{IDs: []string{all[1], all[3]}}, poison.ReplayOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{all[1], all[3]}, ids(done))

	ch := testkit.Channel(t, broker)
	d, ok, err := ch.Get(target, true)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, all[1], d.Headers["_watermill_message_uuid"])
	assert.Equal(t, "1", d.Headers[poison.MetadataReplayCount])
	assert.NotEmpty(t, d.Headers[poison.MetadataReplayedAt])
	assert.NotContains(t, d.Headers, "reason_poisoned", "the failure record stays behind")
	assert.Equal(t, "corr-"+all[1], d.Headers["correlation_id"], "the original metadata travels on")

	assert.Equal(t, []string{all[0], all[2]}, drain(t, broker, "poison.test"), "the rest stay, in order")
	assert.Equal(t, []string{all[3]}, drain(t, broker, target))

	_, err = in.Replay(t.Context(), []string{"poison.test"}, poison.Filter{IDs: []string{"nope"}}, poison.ReplayOptions{})
	assert.ErrorIs(t, err, poison.ErrNotFound)
}

func TestPoisonInspector_Replay_interrupted_after_publish_loses_nothing(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker, all := poisonQueue(t, 3)
	in := inspector(t, broker)
	crash := errors.New("operator's laptop died")

	_, err := in.Replay(t.Context(), []string{"poison.test"}, poison.Filter{IDs: all[1:2]}, poison.ReplayOptions{
		AfterPublish: func(poison.Message) error { return crash },
	})
	require.ErrorIs(t, err, crash)

	assert.Equal(t, all, drain(t, broker, "poison.test"), "the message is still in the poison queue")
	assert.Equal(t, all[1:2], drain(t, broker, "events.OrderPlaced_test.Handler"), "and its copy was delivered: a duplicate, not a loss")
}

func TestPoisonInspector_Purge(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker, all := poisonQueue(t, 3)
	in := inspector(t, broker)

	done, err := in.Purge([]string{"poison.test"}, poison.Filter{IDs: all[:1]})
	require.NoError(t, err)
	assert.Equal(t, all[:1], ids(done))
	_, err = in.Purge([]string{"poison.test"}, poison.Filter{IDs: all[:1]})
	assert.ErrorIs(t, err, poison.ErrNotFound)
	assert.Equal(t, all[1:], drain(t, broker, "poison.test"))
}
