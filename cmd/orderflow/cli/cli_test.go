package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/cmd/orderflow/cli"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/poison"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// result is what one run of the command line left.
type result struct {
	stdout, stderr string
	code           int
}

// run runs orderflow with args, the environment env and stdin (nil: empty,
// not a terminal).
func run(t *testing.T, stdin io.Reader, env map[string]string, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code := cli.Run(t.Context(), args, stdin, &out, &errOut, func(k string) string { return env[k] })
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// requireOK checks a successful run that wrote nothing to stderr.
func requireOK(t *testing.T, r result) {
	t.Helper()
	require.Equal(t, cli.ExitOK, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Empty(t, r.stderr)
}

// requireFailed checks a failed operation: exit 1, one "error: ..." line
// per error on stderr, each ending in a newline.
func requireFailed(t *testing.T, r result, contains string) {
	t.Helper()
	require.Equal(t, cli.ExitFail, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr ends with a newline: %q", r.stderr)
	for line := range strings.SplitSeq(strings.TrimSuffix(r.stderr, "\n"), "\n") {
		assert.True(t, strings.HasPrefix(line, "error: "), "line %q", line)
	}
	assert.Contains(t, r.stderr, contains)
}

// requireUsage checks a usage error: exit 2, nothing on stdout, and on
// stderr exactly the error line and the hint.
func requireUsage(t *testing.T, r result, message, hintCommand string) {
	t.Helper()
	require.Equal(t, cli.ExitUsage, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Empty(t, r.stdout)
	lines := strings.Split(r.stderr, "\n")
	require.Len(t, lines, 3, "two lines and the final newline: %q", r.stderr)
	assert.Equal(t, "error: "+message, lines[0])
	assert.Equal(t, "Run '"+hintCommand+" --help' for usage.", lines[1])
	assert.Empty(t, lines[2])
}

// poisoned is a message put into a poison queue as the poison middleware
// leaves it.
type poisoned struct {
	id, queue, event, handler, topic, reason string
}

func (p poisoned) target() string {
	return messaging.Subscription{Topic: p.topic, Handler: p.handler}.Queue()
}

// fixture is a fresh vhost with the services' poison queues and handler
// queues, and three poison messages: two of invoices, one of orders.
type fixture struct {
	broker string
	env    map[string]string // BROKER_URL
	msgs   []poisoned
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	broker := testkit.NewVhost(t)
	ch := testkit.Channel(t, broker)
	quorum := amqp091.Table{"x-queue-type": "quorum"}
	all := []poisoned{
		{queue: "poison.invoices", event: "OrderPlaced", handler: issueInvoiceHandler, topic: "events.OrderPlaced", reason: "insert invoice: numbering service unavailable (SQLSTATE 57P03)"},
		{queue: "poison.invoices", event: "OrderPlaced", handler: issueInvoiceHandler, topic: "events.OrderPlaced", reason: "insert invoice: lock timeout"},
		{queue: "poison.orders", event: "InvoiceIssued", handler: markInvoicedHandler, topic: "events.InvoiceIssued", reason: "order does not exist"},
	}
	for _, q := range []string{"poison.orders", "poison.invoices", all[0].target(), all[2].target()} {
		_, err := ch.QueueDeclare(q, true, false, false, false, quorum)
		require.NoError(t, err)
	}
	require.NoError(t, ch.Confirm(false))
	f := &fixture{broker: broker, env: map[string]string{"BROKER_URL": broker}}
	for i := range n {
		m := all[i%len(all)]
		m.id = uuid.NewString()
		now := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
		conf, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", m.queue, false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent,
			Body:         fmt.Appendf(nil, `{"event_id":%q}`, m.id),
			Headers: amqp091.Table{
				"_watermill_message_uuid":        m.id,
				"name":                           m.event,
				"reason_poisoned":                m.reason,
				"topic_poisoned":                 m.topic,
				"handler_poisoned":               m.handler,
				messaging.MetadataAttempts:       "6",
				messaging.MetadataErrorType:      "transient:*pgconn.PgError",
				messaging.MetadataFirstFailureAt: now,
				messaging.MetadataLastFailureAt:  now,
			},
		})
		require.NoError(t, err)
		ok, err := conf.WaitContext(t.Context())
		require.NoError(t, err)
		require.True(t, ok)
		f.msgs = append(f.msgs, m)
	}
	return f
}

// count is how many messages queue holds.
func (f *fixture) count(t *testing.T, queue string) int {
	t.Helper()
	n, err := testkit.QueueMessages(f.broker, queue)
	require.NoError(t, err)
	return n
}

// counts is the poison queues' and handler queues' message counts.
func (f *fixture) counts(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, q := range []string{
		"poison.orders", "poison.invoices",
		messaging.Subscription{Topic: "events.OrderPlaced", Handler: issueInvoiceHandler}.Queue(),
		messaging.Subscription{Topic: "events.InvoiceIssued", Handler: markInvoicedHandler}.Queue(),
	} {
		out[q] = f.count(t, q)
	}
	return out
}

// listIDs is the ids `poison list --json` reports.
func (f *fixture) listIDs(t *testing.T) []string {
	t.Helper()
	r := run(t, nil, f.env, "poison", "list", "--json")
	requireOK(t, r)
	var items []struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &items))
	ids := []string{}
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

func idsOf(ms ...poisoned) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.id)
	}
	return out
}

func TestPoison_list_empty(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	f := newFixture(t, 0)

	r := run(t, nil, f.env, "poison", "list")
	requireOK(t, r)
	assert.Equal(t, "no poison messages in poison.orders, poison.invoices\n", r.stdout)

	r = run(t, nil, f.env, "poison", "list", "--json")
	requireOK(t, r)
	assert.Equal(t, "[]\n", r.stdout)
}

func TestPoison_list(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	f := newFixture(t, 3)
	inv1, inv2, ord := f.msgs[0], f.msgs[1], f.msgs[2]
	before := f.counts(t)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "all", want: idsOf(ord, inv1, inv2)},
		{name: "by handler", args: []string{"--handler", issueInvoiceHandler}, want: idsOf(inv1, inv2)},
		{name: "by event", args: []string{"--event", "InvoiceIssued"}, want: idsOf(ord)},
		{name: "by reason, any case", args: []string{"--reason", "LOCK TIMEOUT"}, want: idsOf(inv2)},
		{name: "by handler and reason", args: []string{"--handler", issueInvoiceHandler, "--reason", "57P03"}, want: idsOf(inv1)},
		{name: "nothing matches", args: []string{"--event", "Nope"}, want: []string{}},
		{name: "one queue", args: []string{"--queue", "poison.orders"}, want: idsOf(ord)},
	}
	// One after the other: every list takes the queues' messages for a moment.
	for _, tt := range tests {
		r := run(t, nil, f.env, append([]string{"poison", "list", "--json"}, tt.args...)...)
		requireOK(t, r)
		var items []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &items), r.stdout)
		got := []string{}
		for _, it := range items {
			got = append(got, it["id"].(string))
		}
		assert.Equal(t, tt.want, got, tt.name)
	}

	{ // the JSON shape
		r := run(t, nil, f.env, "poison", "list", "--json", "--event", "InvoiceIssued")
		requireOK(t, r)
		var items []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &items))
		require.Len(t, items, 1)
		keys := []string{}
		for k := range items[0] {
			keys = append(keys, k)
		}
		assert.ElementsMatch(t, []string{"id", "queue", "event", "handler", "reason", "attempts", "last_failure_at"}, keys)
		assert.Equal(t, "poison.orders", items[0]["queue"])
		assert.Equal(t, markInvoicedHandler, items[0]["handler"])
		assert.InDelta(t, 6, items[0]["attempts"], 0)
		_, err := time.Parse(time.RFC3339Nano, items[0]["last_failure_at"].(string))
		assert.NoError(t, err)
	}

	{ // the table
		r := run(t, nil, f.env, "poison", "list")
		requireOK(t, r)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		require.Len(t, lines, 4, r.stdout)
		assert.Regexp(t, `^ID\s+QUEUE\s+EVENT\s+HANDLER\s+ATTEMPTS\s+AGE\s+REASON$`, lines[0])
		assert.Regexp(t, `^`+ord.id+`\s+poison\.orders\s+InvoiceIssued\s+`+markInvoicedHandler+`\s+6\s+1m0s\s+order does not exist$`, lines[1])
	}

	assert.Equal(t, before, f.counts(t), "list changes nothing")
}

func TestPoison_show(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	f := newFixture(t, 1)
	m := f.msgs[0]

	r := run(t, nil, f.env, "poison", "show", m.id)
	requireOK(t, r)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
	assert.Equal(t, m.id, got["id"])
	assert.Equal(t, m.queue, got["queue"])
	assert.Equal(t, m.reason, got["reason"])
	assert.Equal(t, m.target(), got["target_queue"])
	assert.Equal(t, map[string]any{"event_id": m.id}, got["payload"])
	assert.Equal(t, m.handler, got["metadata"].(map[string]any)["handler_poisoned"])

	unknown := uuid.NewString()
	r = run(t, nil, f.env, "poison", "show", unknown)
	requireFailed(t, r, "error: message "+unknown+" is not in poison.orders, poison.invoices\n")
	assert.Empty(t, r.stdout)
	assert.Equal(t, 1, f.count(t, m.queue))
}

func TestPoison_replay(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	invoicesQueue := messaging.Subscription{Topic: "events.OrderPlaced", Handler: issueInvoiceHandler}.Queue()
	ordersQueue := messaging.Subscription{Topic: "events.InvoiceIssued", Handler: markInvoicedHandler}.Queue()

	t.Run("one", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3)
		m := f.msgs[1]
		r := run(t, nil, f.env, "poison", "replay", m.id, "--yes")
		requireOK(t, r)
		assert.Equal(t, fmt.Sprintf("replayed %s (OrderPlaced) to %s\n", m.id, invoicesQueue), r.stdout)
		assert.Equal(t, map[string]int{"poison.invoices": 1, "poison.orders": 1, invoicesQueue: 1, ordersQueue: 0}, f.counts(t))
		assert.Equal(t, idsOf(f.msgs[2], f.msgs[0]), f.listIDs(t), "the others stay, in order")

		// The copy in the handler's queue is the message, marked as replayed.
		d, ok, err := testkit.Channel(t, f.broker).Get(invoicesQueue, true)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, m.id, d.Headers["_watermill_message_uuid"])
		assert.Equal(t, "1", d.Headers[poison.MetadataReplayCount])
		assert.NotContains(t, d.Headers, "reason_poisoned")
		assert.JSONEq(t, fmt.Sprintf(`{"event_id":%q}`, m.id), string(d.Body))
	})

	t.Run("by handler, json", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3)
		r := run(t, nil, f.env, "poison", "replay", "--handler", issueInvoiceHandler, "--yes", "--json")
		requireOK(t, r)
		var got struct {
			DryRun   bool                `json:"dry_run"`
			Messages []map[string]string `json:"messages"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
		assert.False(t, got.DryRun)
		require.Len(t, got.Messages, 2)
		assert.Equal(t, map[string]string{
			"id": f.msgs[0].id, "queue": "poison.invoices", "event": "OrderPlaced",
			"handler": issueInvoiceHandler, "target_queue": invoicesQueue,
		}, got.Messages[0])
		assert.Equal(t, map[string]int{"poison.invoices": 0, "poison.orders": 1, invoicesQueue: 2, ordersQueue: 0}, f.counts(t))
	})

	t.Run("all", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3)
		r := run(t, nil, f.env, "poison", "replay", "--all", "-y")
		requireOK(t, r)
		assert.Len(t, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"), 3, r.stdout)
		assert.Equal(t, map[string]int{"poison.invoices": 0, "poison.orders": 0, invoicesQueue: 2, ordersQueue: 1}, f.counts(t))

		r = run(t, nil, f.env, "poison", "replay", "--all", "--yes")
		requireOK(t, r)
		assert.Equal(t, "nothing to replay\n", r.stdout)
	})

	t.Run("dry run", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 3)
		before := f.counts(t)
		r := run(t, nil, f.env, "poison", "replay", "--all", "--dry-run")
		requireOK(t, r)
		assert.Equal(t, fmt.Sprintf("would replay %s (InvoiceIssued) to %s\nwould replay %s (OrderPlaced) to %s\nwould replay %s (OrderPlaced) to %s\n",
			f.msgs[2].id, ordersQueue, f.msgs[0].id, invoicesQueue, f.msgs[1].id, invoicesQueue), r.stdout)

		r = run(t, nil, f.env, "poison", "replay", f.msgs[0].id, "--dry-run", "--json")
		requireOK(t, r)
		assert.JSONEq(t, fmt.Sprintf(`{"dry_run":true,"messages":[{"id":%q,"queue":"poison.invoices","event":"OrderPlaced","handler":%q,"target_queue":%q}]}`,
			f.msgs[0].id, issueInvoiceHandler, invoicesQueue), r.stdout)
		assert.Equal(t, before, f.counts(t), "a dry run changes nothing")
	})

	t.Run("unknown id", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1)
		unknown := uuid.NewString()
		r := run(t, nil, f.env, "poison", "replay", unknown, "--yes")
		requireFailed(t, r, "error: message "+unknown+": not in the poison queues\n")
		assert.Equal(t, "nothing to replay\n", r.stdout)
		assert.Equal(t, 1, f.count(t, "poison.invoices"))
	})

	t.Run("refused without --yes when stdin is not a terminal", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1)
		r := run(t, strings.NewReader("y\n"), f.env, "poison", "replay", "--all")
		requireUsage(t, r, "replay acts on the poison queues: pass --yes to confirm (stdin is not a terminal), or --dry-run to see what it would replay",
			"orderflow poison replay")
		assert.Equal(t, 1, f.count(t, "poison.invoices"))
	})
}

// terminal runs orderflow with a pseudo-terminal as stdin, answering
// answer to its question, and returns what it left.
func terminal(t *testing.T, env map[string]string, answer string, args ...string) result {
	t.Helper()
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ptmx.Close(); _ = tty.Close() })
	// The terminal echoes what is typed; read it away so the pty never fills.
	go func() { _, _ = io.Copy(io.Discard, ptmx) }()
	_, err = ptmx.WriteString(answer + "\n")
	require.NoError(t, err)
	return run(t, tty, env, args...)
}

func TestPoison_replay_and_purge_confirm_on_a_terminal(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	invoicesQueue := messaging.Subscription{Topic: "events.OrderPlaced", Handler: issueInvoiceHandler}.Queue()

	t.Run("yes replays", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 2)
		r := terminal(t, f.env, "y", "poison", "replay", "--handler", issueInvoiceHandler)
		require.Equal(t, cli.ExitOK, r.code, r.stderr)
		assert.Contains(t, r.stderr, "replay these 2 message(s)? [y/N] ")
		assert.Contains(t, r.stderr, f.msgs[0].id, "the question lists the messages")
		assert.Equal(t, 2, strings.Count(r.stdout, "replayed "), r.stdout)
		assert.Equal(t, 2, f.count(t, invoicesQueue))
		assert.Equal(t, 0, f.count(t, "poison.invoices"))
	})

	t.Run("no keeps them", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 2)
		r := terminal(t, f.env, "n", "poison", "purge", "--all")
		require.Equal(t, cli.ExitFail, r.code, r.stderr)
		assert.True(t, strings.HasSuffix(r.stderr, "purge these 2 message(s)? [y/N] error: aborted: nothing purged\n"), r.stderr)
		assert.Empty(t, r.stdout)
		assert.Equal(t, 2, f.count(t, "poison.invoices"))
	})

	t.Run("anything but yes keeps them", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1)
		r := terminal(t, f.env, "sure", "poison", "replay", f.msgs[0].id)
		require.Equal(t, cli.ExitFail, r.code, r.stderr)
		assert.True(t, strings.HasSuffix(r.stderr, "replay these 1 message(s)? [y/N] error: aborted: nothing replayed\n"), r.stderr)
		assert.Equal(t, 1, f.count(t, "poison.invoices"))
	})

	t.Run("--yes does not ask", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, 1)
		r := terminal(t, f.env, "n", "poison", "purge", f.msgs[0].id, "--yes")
		requireOK(t, r)
		assert.Equal(t, fmt.Sprintf("purged %s (OrderPlaced) from poison.invoices\n", f.msgs[0].id), r.stdout)
	})
}

func TestPoison_purge(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	f := newFixture(t, 3)
	before := f.counts(t)

	r := run(t, nil, f.env, "poison", "purge", "--reason", "lock timeout", "--dry-run")
	requireOK(t, r)
	assert.Equal(t, fmt.Sprintf("would purge %s (OrderPlaced) from poison.invoices\n", f.msgs[1].id), r.stdout)
	assert.Equal(t, before, f.counts(t))

	r = run(t, nil, f.env, "poison", "purge", "--reason", "lock timeout", "--yes", "--json")
	requireOK(t, r)
	assert.JSONEq(t, fmt.Sprintf(`{"dry_run":false,"messages":[{"id":%q,"queue":"poison.invoices","event":"OrderPlaced","handler":%q,"target_queue":%q}]}`,
		f.msgs[1].id, issueInvoiceHandler, f.msgs[1].target()), r.stdout)
	assert.Equal(t, idsOf(f.msgs[2], f.msgs[0]), f.listIDs(t))
	after := f.counts(t)
	assert.Equal(t, 0, after[f.msgs[1].target()], "a purge sends nothing anywhere")

	r = run(t, nil, f.env, "poison", "purge", "--all", "--yes")
	requireOK(t, r)
	assert.Empty(t, f.listIDs(t))
}

func TestPoison_broker_out_of_reach(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	ln := testkit.NewProxy(t, "127.0.0.1:1") // a port nothing listens on behind it
	ln.Cut()
	url := "amqp://guest:secret@" + ln.Addr() + "/"
	for _, args := range [][]string{
		{"poison", "list"},
		{"poison", "list", "--json"},
		{"poison", "show", uuid.NewString()},
		{"poison", "replay", "--all", "--yes"},
		{"poison", "purge", "--all", "--dry-run"},
	} {
		r := run(t, nil, nil, append(args, "--broker-url", url)...)
		requireFailed(t, r, "error: cannot reach RabbitMQ at amqp://guest:***@"+ln.Addr()+"/")
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		assert.NotContains(t, r.stderr, "secret")
		assert.Empty(t, r.stdout)
	}
}

func TestUsage_errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		message string
		hint    string
	}{
		{name: "unknown flag on replay", args: []string{"poison", "replay", "--all", "--yess"}, message: "unknown flag: --yess", hint: "orderflow poison replay"},
		{name: "unknown flag on list", args: []string{"poison", "list", "--bogus"}, message: "unknown flag: --bogus", hint: "orderflow poison list"},
		{name: "unknown shorthand", args: []string{"poison", "list", "-x"}, message: "unknown shorthand flag: 'x' in -x", hint: "orderflow poison list"},
		{name: "unknown flag on a group", args: []string{"poison", "--bogus"}, message: "unknown flag: --bogus", hint: "orderflow poison"},
		{name: "flag without value", args: []string{"poison", "list", "--handler"}, message: "flag needs an argument: --handler", hint: "orderflow poison list"},
		{name: "bad bool", args: []string{"poison", "list", "--json=maybe"}, message: `invalid argument "maybe" for "--json" flag: strconv.ParseBool: parsing "maybe": invalid syntax`, hint: "orderflow poison list"},
		{name: "unknown command", args: []string{"bogus"}, message: `unknown command "bogus" for "orderflow"`, hint: "orderflow"},
		{name: "misspelt command", args: []string{"pioson", "list"}, message: `unknown command "pioson" for "orderflow" (did you mean "poison"?)`, hint: "orderflow"},
		{name: "unknown poison command", args: []string{"poison", "bogus"}, message: `unknown command "bogus" for "orderflow poison"`, hint: "orderflow poison"},
		{name: "misspelt poison command", args: []string{"poison", "lst"}, message: `unknown command "lst" for "orderflow poison" (did you mean "list"?)`, hint: "orderflow poison"},
		{name: "unknown outbox command", args: []string{"outbox", "stats"}, message: `unknown command "stats" for "orderflow outbox" (did you mean "status"?)`, hint: "orderflow outbox"},
		{name: "list takes no arguments", args: []string{"poison", "list", "x"}, message: `unknown command "x" for "orderflow poison list"`, hint: "orderflow poison list"},
		{name: "show without id", args: []string{"poison", "show"}, message: "accepts 1 arg(s), received 0", hint: "orderflow poison show"},
		{name: "show with two ids", args: []string{"poison", "show", "a", "b"}, message: "accepts 1 arg(s), received 2", hint: "orderflow poison show"},
		{name: "bare replay", args: []string{"poison", "replay", "--yes"}, message: "name message IDs, or select with --handler, --event, --reason or --all", hint: "orderflow poison replay"},
		{name: "bare purge", args: []string{"poison", "purge"}, message: "name message IDs, or select with --handler, --event, --reason or --all", hint: "orderflow poison purge"},
		{name: "all with ids", args: []string{"poison", "purge", "--all", "x", "--yes"}, message: "--all selects every message: drop it, or the IDs and filters", hint: "orderflow poison purge"},
		{name: "all with a filter", args: []string{"poison", "replay", "--all", "--event", "E", "--yes"}, message: "--all selects every message: drop it, or the IDs and filters", hint: "orderflow poison replay"},
		{name: "purge without --yes off a terminal", args: []string{"poison", "purge", "--all"}, message: "purge acts on the poison queues: pass --yes to confirm (stdin is not a terminal), or --dry-run to see what it would purge", hint: "orderflow poison purge"},
		{name: "broker url not amqp", args: []string{"poison", "list", "--broker-url", "http://127.0.0.1:15672"}, message: "invalid --broker-url: AMQP scheme must be either 'amqp://' or 'amqps://'", hint: "orderflow poison list"},
		{name: "database url malformed", args: []string{"outbox", "status", "--orders-database-url", "postgres://a b@/"}, message: `invalid --orders-database-url: unexpected spaces found in "a b", use percent-encoded spaces (%20) instead`, hint: "orderflow outbox status"},
		{name: "outbox status takes no arguments", args: []string{"outbox", "status", "orders"}, message: `unknown command "orders" for "orderflow outbox status"`, hint: "orderflow outbox status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, nil, map[string]string{"BROKER_URL": "amqp://guest:guest@127.0.0.1:1/"}, tt.args...)
			requireUsage(t, r, tt.message, tt.hint)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {}, {"help"}} {
		r := run(t, nil, nil, args...)
		requireOK(t, r)
		assert.Contains(t, r.stdout, "Exit status:\n  0  success")
		assert.Contains(t, r.stdout, "2  usage")
		assert.Contains(t, r.stdout, `poison list     [{"id","queue","event","handler","reason","attempts",`)
		assert.Contains(t, r.stdout, `outbox status   [{"service","rows","oldest_created_at","oldest_age_seconds",`)
	}
	for _, args := range [][]string{{"poison"}, {"poison", "--help"}, {"poison", "replay", "--help"}, {"outbox", "status", "-h"}} {
		r := run(t, nil, nil, args...)
		requireOK(t, r)
		assert.Contains(t, r.stdout, "Usage:")
	}
	r := run(t, nil, nil, "poison", "replay", "--help")
	for _, flag := range []string{"--yes", "--dry-run", "--json", "--all", "--handler", "--event", "--reason", "--broker-url", "--queue"} {
		assert.Contains(t, r.stdout, flag)
	}
}

// The handlers, as the services name them in their topologies.
const (
	issueInvoiceHandler = "invoices.IssueInvoiceOnOrderPlaced"
	markInvoicedHandler = "orders.MarkOrderInvoicedOnInvoiceIssued"
)
