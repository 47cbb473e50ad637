// Package e2e_test runs both services in the test process against fresh
// databases and a fresh RabbitMQ vhost, and checks the guarantees end to end.
package e2e_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// TestFlow_every_order_gets_exactly_one_invoice runs the flow on each queue
// type BROKER_QUEUE_TYPE offers.
func TestFlow_every_order_gets_exactly_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	for _, queueType := range []messaging.QueueType{messaging.QueueQuorum, messaging.QueueClassic} {
		t.Run(string(queueType), func(t *testing.T) {
			t.Parallel()
			broker := testkit.NewVhost(t)
			s := startStackWith(t, broker, broker, map[string]string{"BROKER_QUEUE_TYPE": string(queueType)})
			placeAndInvoice(t, s, 200)
			for _, q := range []string{
				messaging.Subscription{Topic: messaging.EventTopic("OrderPlaced"), Handler: issueInvoiceHandler}.Queue(),
				messaging.Subscription{Topic: messaging.EventTopic("InvoiceIssued"), Handler: markInvoicedHandler}.Queue(),
				messaging.PoisonQueue(ordersName), messaging.PoisonQueue(invoicesName),
			} {
				assert.Equal(t, string(queueType), testkit.QueueInfo(t, broker, q).Type, "queue %s", q)
			}
		})
	}
}

// placeAndInvoice places orders from 32 clients at once and waits until
// each has its one invoice.
func placeAndInvoice(t *testing.T, s *stack, orders int) {
	t.Helper()
	const workers = 32
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				code, _, err := postOrder(t.Context(), s.orders.URL, fmt.Sprintf("c-%d", i%17), int64(100+i))
				if err != nil || code != http.StatusCreated {
					failed.Add(1)
					t.Errorf("order %d: status %d, error %v", i, code, err)
				}
			}
		})
	}
	for i := range orders {
		next <- i
	}
	close(next)
	wg.Wait()
	accepted := time.Since(start)
	require.Zero(t, failed.Load())

	s.waitAllInvoiced(t, orders, 60*time.Second)
	all := time.Since(start)
	t.Logf("%d orders accepted in %s (%.0f/s), all invoiced after %s (%.0f orders/s end to end)",
		orders, accepted.Round(time.Millisecond), float64(orders)/accepted.Seconds(), all.Round(time.Millisecond), float64(orders)/all.Seconds())
}

// TestFlow_customers_see_only_their_own_orders_and_invoices runs the flow as
// two customers, each named as Kong names the authenticated consumer
// (X-Consumer-Custom-ID), and checks that neither sees, lists or places
// the other's orders or invoices, that one Idempotency-Key makes an order
// for each, and that the events carried each order's customer to its
// invoice.
func TestFlow_customers_see_only_their_own_orders_and_invoices(t *testing.T) { //nolint:tparallel // see the subtests
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	ctx := t.Context()
	customers := []string{"c-alice", "c-bob"}
	const perCustomer = 5

	placed := map[string][]string{} // customer -> order ids
	for _, c := range customers {
		for i := range perCustomer {
			body := fmt.Sprintf(`{"amount":%d,"currency":"EUR"}`, 100+i)
			headers := map[string]string{}
			if i == 0 {
				headers[httpapiIdempotencyKey] = "the-same-key" // both customers use it
			}
			code, o, err := postOrderWith(ctx, s.orders.URL, c, body, headers)
			require.NoError(t, err)
			require.Equal(t, http.StatusCreated, code, "%s's order %d", c, i)
			assert.Equal(t, c, o.CustomerID, "the order is the caller's")
			placed[c] = append(placed[c], o.ID)
		}
	}
	s.waitAllInvoiced(t, len(customers)*perCustomer, 60*time.Second)

	// The customers' checks run in turn: the counts after them need them done.
	for i, me := range customers {
		t.Run(me, func(t *testing.T) { checkOwnOrdersOnly(t, s, me, customers[1-i], placed) })
	}
	c, err := s.counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(customers)*perCustomer, c.orders, "no refused order was placed")
	var wrong int
	require.NoError(t, s.invoicesDB.QueryRowContext(ctx,
		`SELECT count(*) FROM invoices WHERE customer_id NOT IN ('c-alice', 'c-bob')`).Scan(&wrong))
	assert.Zero(t, wrong)
}

// checkOwnOrdersOnly checks, as customer me, that me sees exactly the
// orders placed[me] and their invoices, and other's ones as unknown.
func checkOwnOrdersOnly(t *testing.T, s *stack, me, other string, placed map[string][]string) {
	t.Helper()
	// My list holds my orders, all of them, and no other.
	var listed []string
	for _, o := range listOrders(t, s.orders.URL, me, "") {
		assert.Equal(t, me, o.CustomerID)
		listed = append(listed, o.ID)
	}
	assert.ElementsMatch(t, placed[me], listed)
	code, _ := getJSON(t, s.orders.URL+"/orders?customer_id="+other, me, nil)
	assert.Equal(t, http.StatusForbidden, code, "another customer's list")

	for _, id := range placed[me] {
		var o order
		code, _ := getJSON(t, s.orders.URL+"/orders/"+id, me, &o)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "invoiced", o.Status)
		var invs struct {
			Items []invoiceBody `json:"items"`
		}
		code, _ = getJSON(t, s.invoices.URL+"/invoices?order_id="+id, me, &invs)
		require.Equal(t, http.StatusOK, code)
		require.Len(t, invs.Items, 1)
		inv := invs.Items[0]
		assert.Equal(t, me, inv.CustomerID, "OrderPlaced carried the customer to the invoice")
		assert.Equal(t, o.InvoiceID, inv.ID)
		code, _ = getJSON(t, s.invoices.URL+"/invoices/"+inv.ID, me, nil)
		assert.Equal(t, http.StatusOK, code)

		// The other customer is told what an unknown id is told.
		for _, url := range []string{
			s.orders.URL + "/orders/" + id,
			s.invoices.URL + "/invoices?order_id=" + id,
			s.invoices.URL + "/invoices/" + inv.ID,
		} {
			code, body := getJSON(t, url, other, nil)
			assert.Equal(t, http.StatusNotFound, code, "%s asks for %s", other, url)
			assert.NotContains(t, body, me)
			code, _ = getJSON(t, url, "", nil)
			assert.Equal(t, http.StatusUnauthorized, code, "nobody asks for %s", url)
		}
	}

	// An order in another customer's name is refused and not placed.
	code, _, err := postOrderWith(t.Context(), s.orders.URL, me, fmt.Sprintf(`{"customer_id":%q,"amount":1,"currency":"EUR"}`, other), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, code)
}
