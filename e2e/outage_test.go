//go:build !race

// The outage tests cut a service's RabbitMQ connections, which runs
// watermill-amqp's reconnect loop. That loop has a data race inside the
// library (ConnectionWrapper.connected is reassigned without a lock while
// the subscriber's reconnect goroutine reads it: watermill issue #693), so
// under -race these tests fail on the library's code, not ours. They are
// built without the race detector and run by a second `go test` in
// `task test` (see Taskfile.yml). Everything else runs with -race.

package e2e_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestOutage_cut_off_from_broker_then_restored(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	for _, cut := range []string{"orders", "invoices"} {
		t.Run(cut+"_cut_off", func(t *testing.T) {
			t.Parallel()
			broker := testkit.NewVhost(t)
			viaProxy, proxy := testkit.ProxiedURL(t, broker)

			ordersBroker, invoicesBroker := broker, broker
			if cut == "orders" {
				ordersBroker = viaProxy
			} else {
				invoicesBroker = viaProxy
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

func TestOutage_orders_starts_and_accepts_orders_while_broker_is_down(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	viaProxy, proxy := testkit.ProxiedURL(t, broker)
	proxy.Cut()

	env := testkit.ServiceEnv(t, viaProxy)
	ordersSvc := testkit.StartServiceNoWait(t, ordersName, ordersApp, env)
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
	testkit.StartService(t, invoicesName, invoicesApp, invoicesEnv)
	proxy.Restore()
	testkit.WaitReady(t, ordersSvc.URL, 30*time.Second)
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		o, err := getOrder(t.Context(), ordersSvc.URL, "c-1", placed.ID)
		if err != nil {
			return err
		}
		if o.Status != "invoiced" {
			return fmt.Errorf("order %s is %s", o.ID, o.Status)
		}
		return nil
	})
}
