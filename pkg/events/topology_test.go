package events_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// systemTopology is what the two services declare on RabbitMQ, together:
// the contract test holds the document against what the apps declare.
func systemTopology() messaging.Topology {
	topology := orders.Topology
	for _, s := range invoices.Topology.Subscriptions {
		topology = topology.With(s)
	}
	return topology
}

// handlerOf is the name of service's handler in the system's topology.
func handlerOf(t *testing.T, service string) string {
	t.Helper()
	for _, s := range systemTopology().Subscriptions {
		if s.Service == service {
			return s.Handler
		}
	}
	t.Fatalf("no handler of %s in the topology", service)
	return ""
}

// declareTopology declares the system's topology on ch, as every service's
// publisher does before its first publish to a topic: the exchanges, the
// handler queues with their arguments and the poison queues. It is the one
// place these tests know where the topology is defined.
func declareTopology(t *testing.T, ch *amqp091.Channel) {
	t.Helper()
	topology := systemTopology()
	for _, s := range topology.Subscriptions {
		require.NoError(t, topology.Declare(ch, s.Topic))
	}
}

// declared is what a vhost holds, as RabbitMQ's management API reports it:
// exchanges, queues and the bindings between them.
type declared struct {
	exchanges map[string]map[string]any // name → type, durable, autoDelete
	queues    map[string]map[string]any // name → durable, exclusive, autoDelete, arguments
	bindings  map[string][]string       // queue → "exchange/routing key"
}

func management(t *testing.T, vhost, what string) []any {
	t.Helper()
	u, err := url.Parse(testkit.ManagementURL() + "/api/" + what + "/" + url.PathEscape(vhost))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	require.NoError(t, err)
	if u.User != nil {
		pass, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pass)
		req.URL.User = nil
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", req.URL)
	v, err := jsonschema.UnmarshalJSON(resp.Body)
	require.NoError(t, err)
	list, ok := v.([]any)
	require.True(t, ok)
	return list
}

// inspect reads the vhost of brokerURL.
func inspect(t *testing.T, brokerURL string) declared {
	t.Helper()
	u, err := url.Parse(brokerURL)
	require.NoError(t, err)
	vhost := strings.TrimPrefix(u.Path, "/")
	d := declared{exchanges: map[string]map[string]any{}, queues: map[string]map[string]any{}, bindings: map[string][]string{}}
	for _, e := range management(t, vhost, "exchanges") {
		e := e.(map[string]any)
		name := e["name"].(string)
		if name == "" || strings.HasPrefix(name, "amq.") { // RabbitMQ's own
			continue
		}
		d.exchanges[name] = map[string]any{"type": e["type"], "durable": e["durable"], "autoDelete": e["auto_delete"]}
	}
	for _, q := range management(t, vhost, "queues") {
		q := q.(map[string]any)
		d.queues[q["name"].(string)] = map[string]any{
			"durable": q["durable"], "exclusive": q["exclusive"], "autoDelete": q["auto_delete"], "arguments": q["arguments"],
		}
	}
	for _, b := range management(t, vhost, "bindings") {
		b := b.(map[string]any)
		if b["source"] == "" || b["destination_type"] != "queue" { // the default exchange binds every queue
			continue
		}
		q := b["destination"].(string)
		d.bindings[q] = append(d.bindings[q], fmt.Sprintf("%s/%s", b["source"], b["routing_key"]))
	}
	return d
}

// documented is what the document says the vhost holds.
func documented(t *testing.T, doc document) declared {
	t.Helper()
	d := declared{exchanges: map[string]map[string]any{}, queues: map[string]map[string]any{}, bindings: map[string][]string{}}
	for _, ch := range doc.channels(t) {
		switch ch.is {
		case "routingKey":
			e, _ := ch.binding["exchange"].(map[string]any)
			require.Equal(t, ch.address, e["name"], "channel %s: the address is the exchange", ch.id)
			d.exchanges[e["name"].(string)] = map[string]any{"type": e["type"], "durable": e["durable"], "autoDelete": e["autoDelete"]}
		case "queue":
			q, _ := ch.binding["queue"].(map[string]any)
			require.Equal(t, ch.address, q["name"], "channel %s: the address is the queue", ch.id)
			args, _ := ch.binding["x-arguments"].(map[string]any)
			if args == nil {
				args = map[string]any{}
			}
			d.queues[q["name"].(string)] = map[string]any{
				"durable": q["durable"], "exclusive": q["exclusive"], "autoDelete": q["autoDelete"], "arguments": args,
			}
			bound, _ := ch.binding["x-bindings"].([]any)
			for _, b := range bound {
				b := b.(map[string]any)
				d.bindings[q["name"].(string)] = append(d.bindings[q["name"].(string)], fmt.Sprintf("%s/%s", b["exchange"], b["routingKey"]))
			}
		default:
			t.Fatalf("channel %s: amqp binding is %q, want routingKey or queue", ch.id, ch.is)
		}
	}
	return d
}

// The document's exchanges, queues (with their arguments: quorum, delivery
// limit, dead-letter target) and bindings are exactly the ones the
// topology declares on RabbitMQ.
func TestAsyncAPI_channels_are_the_declared_topology(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	declareTopology(t, testkit.Channel(t, broker))

	got := inspect(t, broker)
	want := documented(t, loadDocument(t))
	assert.Equal(t, want.exchanges, got.exchanges, "exchanges: the document's (want) and RabbitMQ's (got)")
	assert.Equal(t, want.queues, got.queues, "queues and their arguments: the document's (want) and RabbitMQ's (got)")
	assert.Equal(t, want.bindings, got.bindings, "bindings: the document's (want) and RabbitMQ's (got)")
}
