//go:build !race

// The cluster test loses RabbitMQ nodes under the services, which runs
// watermill-amqp's reconnect loop and its data race (see outage_test.go):
// it is built without -race and run by the second `go test` of `task test`.

package e2e_test

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
	"github.com/orderflow/orderflow/pkg/testkit/rabbitcluster"
)

// TestCluster_node_loss_under_load runs both services against a
// three-node RabbitMQ cluster behind one load-balanced address (Amazon MQ's
// cluster deployment), kills the node that leads the handler queues with
// SIGKILL while orders stream in, brings it back, then restarts a second
// node, and counts: every accepted order is invoiced once, nothing is left
// in an outbox, nothing went to a poison queue.
func TestCluster_node_loss_under_load(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	cluster := rabbitcluster.Start(t)
	// Amazon MQ's endpoint sends a client to any live node; this one sends
	// every client to the first live node, so that losing it drops every
	// connection of both services (publishers with confirms in flight,
	// consumers with unacked deliveries, the monitors) at once.
	lb := testkit.NewFailoverBalancer(t, cluster.AMQPAddrs()...)
	broker := "amqp://guest:guest@" + lb.Addr() + "/"
	s := startStack(t, broker, broker)

	handlerQueues := []string{}
	for _, sub := range orders.Topology.Subscriptions {
		handlerQueues = append(handlerQueues, sub.Queue())
	}
	poisonQueues := []string{messaging.PoisonQueue(ordersName), messaging.PoisonQueue(invoicesName)}
	allNodes := make([]string, 0, len(cluster.Nodes))
	for _, n := range cluster.Nodes {
		allNodes = append(allNodes, n.Name)
	}
	slices.Sort(allNodes)
	// Each queue is a quorum queue replicated on every node.
	testkit.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, name := range append(slices.Clone(handlerQueues), poisonQueues...) {
			q, err := cluster.QueueInfo(name)
			if err != nil {
				return err
			}
			members := slices.Sorted(slices.Values(q.Members))
			if q.Type != "quorum" || !slices.Equal(members, allNodes) {
				return fmt.Errorf("queue %s: type %q, members %v, want quorum on %v", name, q.Type, q.Members, allNodes)
			}
		}
		return nil
	})

	ready := watchReadiness(t, s.orders.URL, s.invoices.URL)
	stream := startOrderStream(t, s.orders.URL, 10*time.Millisecond)
	waitInvoiced(t, s, 40, 60*time.Second)

	// Kill the leader of invoices' handler queue (the first node, which
	// declared the queues, so it leads them all).
	victim := leaderOf(t, cluster, handlerQueues[0])
	for _, name := range handlerQueues[1:] {
		if l := leaderOf(t, cluster, name).Name; l != victim.Name {
			t.Logf("queue %s is led by %s, not %s", name, l, victim.Name)
		}
	}
	conns := lb.Open()
	killedAt := time.Now()
	victim.Kill()
	t.Logf("killed %s (SIGKILL), the leader of %s, with %d of the services' connections (%v)",
		victim.Name, handlerQueues[0], conns[victim.AMQPAddr()], conns)
	waitResumed(t, s, stream, killedAt, 90*time.Second)
	testkit.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, name := range handlerQueues {
			q, err := cluster.QueueInfo(name)
			if err != nil {
				return err
			}
			if q.Leader == victim.Name || q.Leader == "" {
				return fmt.Errorf("queue %s still has leader %q", name, q.Leader)
			}
		}
		return nil
	})

	require.NoError(t, victim.Restart(), "restart %s", victim.Name)
	require.NoError(t, cluster.WaitRunning(60*time.Second, cluster.Nodes...))
	t.Logf("%s is back", victim.Name)

	// Restart a second node, gracefully this time (as a maintenance
	// window does): the one that now holds the services' connections.
	conns = lb.Open()
	var second *rabbitcluster.Node
	for _, n := range cluster.Nodes {
		if n != victim && (second == nil || conns[n.AMQPAddr()] > conns[second.AMQPAddr()]) {
			second = n
		}
	}
	t.Logf("%s leads %s", leaderOf(t, cluster, handlerQueues[0]).Name, handlerQueues[0])
	stoppedAt := time.Now()
	second.Stop(60 * time.Second)
	t.Logf("stopped %s (SIGTERM, %s), with %d of the services' connections (%v)",
		second.Name, time.Since(stoppedAt).Round(time.Millisecond), conns[second.AMQPAddr()], conns)
	waitResumed(t, s, stream, stoppedAt, 90*time.Second)
	require.NoError(t, second.Restart(), "restart %s", second.Name)
	require.NoError(t, cluster.WaitRunning(60*time.Second, cluster.Nodes...))
	t.Logf("%s is back", second.Name)
	waitInvoiced(t, s, stream.count()+20, 60*time.Second)
	accepted, failures := stream.stop()
	readiness := ready.stop()

	// Every accepted order is invoiced exactly once, and nothing else
	// appeared.
	assert.Empty(t, failures, "every order posted during the failover is accepted")
	s.waitAllInvoiced(t, len(accepted), 90*time.Second)
	ids := map[string]bool{}
	rows, err := s.ordersDB.QueryContext(t.Context(), `SELECT id::text FROM orders WHERE status = 'invoiced'`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids[id] = true
	}
	require.NoError(t, rows.Err())
	for _, o := range accepted {
		assert.True(t, ids[o.id], "accepted order %s is invoiced", o.id)
	}
	testkit.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for name, db := range map[string]testkit.RowQuerier{ordersName: s.ordersDB, invoicesName: s.invoicesDB} {
			if n := testkit.CountRows(t, db, outbox.Table); n != 0 {
				return fmt.Errorf("%s's outbox holds %d rows", name, n)
			}
		}
		return nil
	})
	for _, q := range poisonQueues {
		n, err := testkit.QueueMessages(broker, q)
		require.NoError(t, err)
		assert.Zero(t, n, "no message went to %s", q)
	}
	testkit.WaitReady(t, s.orders.URL, 30*time.Second)
	testkit.WaitReady(t, s.invoices.URL, 30*time.Second)
	testkit.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
		for _, name := range append(slices.Clone(handlerQueues), poisonQueues...) {
			q, err := cluster.QueueInfo(name)
			if err != nil {
				return err
			}
			if len(q.Online) != len(allNodes) {
				return fmt.Errorf("queue %s: %v of %v online", name, q.Online, allNodes)
			}
		}
		return nil
	})

	// The figures of the run.
	om, im := scrape(t, s.orders.URL), scrape(t, s.invoices.URL)
	n := float64(len(accepted))
	issued, _ := sum(im, "orderflow_messages_processed_total", map[string]string{"messaging_consumer_group_name": issueInvoiceHandler})
	marked, _ := sum(om, "orderflow_messages_processed_total", map[string]string{"messaging_consumer_group_name": markInvoicedHandler})
	failed, _ := sum(im, "orderflow_messages_processed_total", map[string]string{"outcome": "failure"})
	failedO, _ := sum(om, "orderflow_messages_processed_total", map[string]string{"outcome": "failure"})
	assert.Zero(t, failed+failedO, "no handling ended in a poison queue")
	retriedI, _ := sum(im, "orderflow_messages_retried_total", nil)
	retriedO, _ := sum(om, "orderflow_messages_retried_total", nil)
	pubO, pubOFailed := sent(om, "events.OrderPlaced")
	pubI, pubIFailed := sent(im, "events.InvoiceIssued")
	var maxLag, p50 float64
	require.NoError(t, s.ordersDB.QueryRowContext(t.Context(),
		`SELECT extract(epoch FROM max(updated_at - created_at)), extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY updated_at - created_at)) FROM orders`).
		Scan(&maxLag, &p50))
	t.Logf("orders accepted %d, all invoiced once; order→invoiced p50 %.2fs, max %.2fs", len(accepted), p50, maxLag)
	for _, ev := range []struct {
		what string
		at   time.Time
	}{{"SIGKILL of " + victim.Name, killedAt}, {"SIGTERM of " + second.Name, stoppedAt}} {
		resume, worst := disruption(t, s, ev.at)
		t.Logf("%s: the first order placed after it was invoiced %s after it; orders placed from 2 s before to 10 s after it took at most %s", ev.what, resume, worst)
	}
	t.Logf("readiness: %s", readiness)
	t.Logf("deliveries: OrderPlaced handled %v times for %v orders (%v redelivered), InvoiceIssued %v times (%v redelivered); handler attempts retried: invoices %v, orders %v",
		issued, n, issued-n, marked, marked-n, retriedI, retriedO)
	t.Logf("publishes: OrderPlaced %v sent + %v failed (%v repeated after a lost confirm), InvoiceIssued %v sent + %v failed (%v repeated)",
		pubO, pubOFailed, pubO-n, pubI, pubIFailed, pubI-n)
}

// leaderOf returns the node that leads a quorum queue.
func leaderOf(t *testing.T, c *rabbitcluster.Cluster, queue string) *rabbitcluster.Node {
	t.Helper()
	var leader *rabbitcluster.Node
	testkit.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		q, err := c.QueueInfo(queue)
		if err != nil {
			return err
		}
		leader = c.Node(q.Leader)
		if leader == nil || !leader.Running() {
			return fmt.Errorf("queue %s has leader %q", queue, q.Leader)
		}
		return nil
	})
	return leader
}

// sent returns how many messages a service published to topic, and how
// many publishes failed.
func sent(fams map[string]*dto.MetricFamily, topic string) (ok, failed float64) {
	fam := fams["messaging_client_sent_messages_total"]
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["messaging_destination_name"] != topic {
			continue
		}
		if labels["error_type"] != "" {
			failed += m.GetCounter().GetValue()
		} else {
			ok += m.GetCounter().GetValue()
		}
	}
	return ok, failed
}

// waitInvoiced waits until at least n orders are invoiced.
func waitInvoiced(t *testing.T, s *stack, n int, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, 50*time.Millisecond, func() error {
		c, err := s.counts(t.Context())
		if err != nil {
			return err
		}
		if c.invoiced < n {
			return fmt.Errorf("%d of %d orders invoiced", c.invoiced, n)
		}
		return nil
	})
}

// disruption measures the flow around an event from the orders' own
// timestamps: how long after it an order placed after it was first invoiced,
// and the longest order-to-invoiced time of the orders placed around it.
func disruption(t *testing.T, s *stack, at time.Time) (resume, worst time.Duration) {
	t.Helper()
	var r, w float64
	require.NoError(t, s.ordersDB.QueryRowContext(t.Context(), `SELECT
		extract(epoch FROM min(updated_at) FILTER (WHERE created_at >= $1) - $1),
		extract(epoch FROM max(updated_at - created_at) FILTER (WHERE created_at BETWEEN $1 - interval '2 seconds' AND $1 + interval '10 seconds'))
		FROM orders WHERE status = 'invoiced'`, at).Scan(&r, &w))
	return time.Duration(r * float64(time.Second)).Round(time.Millisecond), time.Duration(w * float64(time.Second)).Round(time.Millisecond)
}

// waitResumed waits until an order accepted after since is invoiced.
func waitResumed(t *testing.T, s *stack, st *orderStream, since time.Time, timeout time.Duration) {
	t.Helper()
	var first string
	testkit.Eventually(t, timeout, 20*time.Millisecond, func() error {
		if first == "" {
			first = st.firstAfter(since)
			if first == "" {
				return errors.New("no order accepted yet")
			}
		}
		o, err := getOrder(t.Context(), s.orders.URL, "c-cluster", first)
		if err != nil {
			return err
		}
		if o.Status != "invoiced" {
			return fmt.Errorf("order %s is %s", o.ID, o.Status)
		}
		return nil
	})
}

type acceptedOrder struct {
	id string
	at time.Time
}

// orderStream posts an order every interval until stopped.
type orderStream struct {
	mu       sync.Mutex
	accepted []acceptedOrder
	failures []string
	done     chan struct{}
	stopped  chan struct{}
}

func startOrderStream(t *testing.T, ordersURL string, interval time.Duration) *orderStream {
	t.Helper()
	st := &orderStream{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(st.stopped)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-st.done:
				return
			case <-tick.C:
			}
			code, o, err := postOrder(t.Context(), ordersURL, "c-cluster", int64(i))
			st.mu.Lock()
			switch {
			case err != nil:
				st.failures = append(st.failures, err.Error())
			case code != http.StatusCreated:
				st.failures = append(st.failures, fmt.Sprintf("POST /orders: %d", code))
			default:
				st.accepted = append(st.accepted, acceptedOrder{id: o.ID, at: time.Now()})
			}
			st.mu.Unlock()
		}
	}()
	t.Cleanup(func() { st.stop() })
	return st
}

func (st *orderStream) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.accepted)
}

// firstAfter is the first order accepted after since, or "".
func (st *orderStream) firstAfter(since time.Time) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, o := range st.accepted {
		if o.at.After(since) {
			return o.id
		}
	}
	return ""
}

// stop ends the stream and returns what it posted. Stopping twice is fine.
func (st *orderStream) stop() ([]acceptedOrder, []string) {
	select {
	case <-st.done:
	default:
		close(st.done)
	}
	<-st.stopped
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.accepted), slices.Clone(st.failures)
}

// readinessWatch samples both services' /readyz and remembers how long each
// was not up.
type readinessWatch struct {
	mu      sync.Mutex
	notUp   map[string]time.Duration
	states  map[string]map[string]bool
	done    chan struct{}
	stopped chan struct{}
}

func watchReadiness(t *testing.T, urls ...string) *readinessWatch {
	t.Helper()
	w := &readinessWatch{notUp: map[string]time.Duration{}, states: map[string]map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	for _, u := range urls {
		w.states[u] = map[string]bool{}
	}
	go func() {
		defer close(w.stopped)
		const every = 50 * time.Millisecond
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
			for _, u := range urls {
				r, err := testkit.GetReadiness(u)
				w.mu.Lock()
				switch {
				case err != nil:
					w.notUp[u] += every
					w.states[u]["error"] = true
				case r.Status != "up":
					w.notUp[u] += every
					for c, st := range r.Components {
						if st != "up" {
							w.states[u][c+"="+st] = true
						}
					}
				}
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *readinessWatch) stop() string {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for u, d := range w.notUp {
		parts = append(parts, fmt.Sprintf("%s not up for about %s (%v)", u, d, slices.Sorted(maps.Keys(w.states[u]))))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "both services stayed up"
	}
	return strings.Join(parts, "; ")
}
