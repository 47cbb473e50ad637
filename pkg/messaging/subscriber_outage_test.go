//go:build !race

// This test cuts the subscriber's RabbitMQ connection, which runs
// watermill-amqp's reconnect loop and its data race (watermill issue #693;
// see e2e/outage_test.go). It is built without the race detector and run by
// the second `go test` of `task test`.

package messaging_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

// An ack held when the connection fails is lost with it: RabbitMQ
// redelivers those messages once the subscriber is back, and only those.
func TestOutage_batching_subscriber_redelivers_what_it_had_not_acked(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewVhost(t)
	proxied, proxy := testkit.ProxiedURL(t, url)
	b, msgs := newBatching(t, url, proxied, 4)
	b.publish(t, "m", 3)

	got := []*message.Message{next(t, msgs), next(t, msgs), next(t, msgs)}
	got[0].Ack()
	b.waitUnacked(t, 2) // the ack reached RabbitMQ

	proxy.Cut()
	proxy.Restore()
	back := map[string]bool{}
	for i := range 2 {
		m := next(t, msgs)
		if i == 0 { // a redelivery: the old channel is gone
			for _, held := range got[1:] {
				assert.NoError(t, held.Context().Err(), "a handler still running keeps its context after its channel is gone")
			}
		}
		assert.True(t, amqp.IsMessageRedelivered(m), "message %s", m.UUID)
		back[m.UUID] = true
		m.Ack()
	}
	assert.Equal(t, map[string]bool{got[1].UUID: true, got[2].UUID: true}, back)
	require.NoError(t, b.input.Close())
	assert.Zero(t, b.ready(t))
	for _, m := range got[1:] {
		m.Ack() // too late: their channel is gone
	}
}
