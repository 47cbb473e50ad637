// Package e2e_test runs both services in the test process against fresh
// databases and a fresh RabbitMQ vhost, and checks the guarantees end to end.
package e2e_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestFlow_every_order_gets_exactly_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)

	const orders, workers = 200, 32
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
		orders, accepted.Round(time.Millisecond), orders/accepted.Seconds(), all.Round(time.Millisecond), orders/all.Seconds())
}

func TestFlow_survives_broker_outage(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	for _, cut := range []string{"orders", "invoices"} {
		t.Run(cut+"_cut_off", func(t *testing.T) {
			t.Parallel()
			broker := testkit.NewVhost(t)
			u, err := url.Parse(broker)
			require.NoError(t, err)
			proxy := testkit.NewProxy(t, u.Host)
			viaProxy := *u
			viaProxy.Host = proxy.Addr()

			ordersBroker, invoicesBroker := broker, broker
			if cut == "orders" {
				ordersBroker = viaProxy.String()
			} else {
				invoicesBroker = viaProxy.String()
			}
			s := startStack(t, ordersBroker, invoicesBroker)
			cutURL := s.orders.URL
			if cut == "invoices" {
				cutURL = s.invoices.URL
			}

			const before, during = 10, 40
			for i := range before {
				code, _, err := postOrder(t.Context(), s.orders.URL, "c-before", int64(1+i))
				require.NoError(t, err)
				require.Equal(t, http.StatusCreated, code)
			}
			s.waitAllInvoiced(t, before, 30*time.Second)

			proxy.Cut()
			testkit.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
				r, err := testkit.GetReadiness(cutURL)
				if err != nil {
					return err
				}
				if r.Status != "degraded" || r.Components["broker"] == "up" || r.Components["database"] != "up" {
					return fmt.Errorf("readiness during the outage: %+v", r)
				}
				return nil
			})
			for i := range during {
				code, _, err := postOrder(t.Context(), s.orders.URL, "c-during", int64(1+i))
				require.NoError(t, err)
				assert.Equal(t, http.StatusCreated, code, "orders are accepted while %s is cut off", cut)
			}
			c, err := s.counts(t.Context())
			require.NoError(t, err)
			assert.Equal(t, before+during, c.orders)
			assert.Equal(t, before, c.invoices, "no invoice can be issued while %s is cut off", cut)

			proxy.Restore()
			s.waitAllInvoiced(t, before+during, 60*time.Second)
			testkit.WaitReady(t, cutURL, 30*time.Second)
		})
	}
}

func TestFlow_orders_starts_and_accepts_orders_while_broker_is_down(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	u, err := url.Parse(broker)
	require.NoError(t, err)
	proxy := testkit.NewProxy(t, u.Host)
	proxy.Cut()
	viaProxy := *u
	viaProxy.Host = proxy.Addr()

	env := testkit.ServiceEnv(t, viaProxy.String())
	ordersSvc := testkit.StartServiceNoWait(t, ordersName, ordersApp(), env)
	testkit.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		r, err := testkit.GetReadiness(ordersSvc.URL)
		if err != nil {
			return err
		}
		if r.Status != "degraded" || r.Components["broker"] != "connecting" {
			return fmt.Errorf("readiness with the broker down: %+v", r)
		}
		return nil
	})
	code, placed, err := postOrder(t.Context(), ordersSvc.URL, "c-1", 1999)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)

	// invoices starts normally; once the broker is reachable for orders,
	// the order placed during the outage is forwarded and invoiced.
	invoicesEnv := testkit.ServiceEnv(t, broker)
	testkit.StartService(t, invoicesName, invoicesApp(), invoicesEnv)
	proxy.Restore()
	testkit.WaitReady(t, ordersSvc.URL, 30*time.Second)
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		o, err := getOrder(t.Context(), ordersSvc.URL, placed.ID)
		if err != nil {
			return err
		}
		if o.Status != "invoiced" {
			return fmt.Errorf("order %s is %s", o.ID, o.Status)
		}
		return nil
	})
}
